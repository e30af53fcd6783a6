"""tools/bench/compare_headlines.py on the committed bench document and edits of it."""
import copy
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "compare_headlines.py")
FIXTURE = os.path.join(HERE, "..", "..", "..", "tests", "fixtures", "bench", "bench-small.json")


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)


def fixture():
    with open(FIXTURE, encoding="utf-8") as f:
        return json.load(f)


def test_a_run_equals_itself():
    r = run(FIXTURE, FIXTURE)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    n = len(fixture()["results"][0]["items"])
    assert out["compared"] == n and out["identical"] == n and out["share"] == 1.0
    assert out["examples"] == []


def test_counts_changed_headlines_and_matches_by_id(tmp_path):
    doc = fixture()
    other = copy.deepcopy(doc)
    items = other["results"][0]["items"]
    items[0]["headline"] += " (changed)"
    items.reverse()  # order must not matter
    dropped = items.pop(0)  # an article only one side has is not compared
    path = tmp_path / "b.json"
    path.write_text(json.dumps(other))
    out = json.loads(run(FIXTURE, str(path)).stdout)
    n = len(doc["results"][0]["items"]) - 1
    assert out["compared"] == n
    assert out["identical"] == n - 1
    assert out["examples"][0]["b"].endswith("(changed)")
    assert dropped["id"] not in [e["id"] for e in out["examples"]]


def test_technique_choice_and_errors(tmp_path):
    t = fixture()["results"][-1]["technique"]
    r = run(FIXTURE, FIXTURE, "--technique-a", t, "--technique-b", t)
    assert r.returncode == 0 and json.loads(r.stdout)["a"]["technique"] == t
    r = run(FIXTURE, FIXTURE, "--technique-a", "no-such")
    assert r.returncode == 2 and "no technique 'no-such'" in r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = run(str(bad), FIXTURE)
    assert r.returncode == 2 and "cannot read" in r.stderr
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"results": []}))
    assert run(str(empty), FIXTURE).returncode == 2
