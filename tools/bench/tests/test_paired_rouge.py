"""tools/bench/paired_rouge.py on small made-up bench documents."""
import json
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "paired_rouge.py"


def run(tmp_path, doc, *args):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc))
    p = subprocess.run([sys.executable, str(TOOL), str(path), *args], capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def items(scores, headlines=None):
    return [{"id": i, "rougeL": s, "headline": (headlines or [f"h{i}" for i in range(len(scores))])[i]}
            for i, s in enumerate(scores)]


def test_identical_runs_differ_by_zero_with_a_zero_interval(tmp_path):
    doc = {"results": [{"technique": "kv-cache", "items": items([0.1, 0.2, 0.3, 0.0])},
                       {"technique": "int8", "items": items([0.1, 0.2, 0.3, 0.0])}]}
    rc, out, err = run(tmp_path, doc, "--resamples", "500")
    assert rc == 0, err
    r = json.loads(out)["techniques"]["int8"]
    assert r["compared"] == 4 and r["identical_headlines"] == 4
    assert r["relative_difference"] == 0.0 and r["relative_ci95"] == [0.0, 0.0]


def test_a_uniform_loss_is_measured_and_the_interval_contains_it(tmp_path):
    base = [0.2 + 0.01 * (i % 7) for i in range(60)]
    worse = [s * 0.9 for s in base]
    doc = {"results": [{"technique": "kv-cache", "items": items(base)},
                       {"technique": "int4", "items": items(worse, ["x"] * 60)}]}
    rc, out, err = run(tmp_path, doc, "--techniques", "int4", "--resamples", "500")
    assert rc == 0, err
    r = json.loads(out)["techniques"]["int4"]
    assert abs(r["relative_difference"] + 0.1) < 1e-9
    lo, hi = r["relative_ci95"]
    assert lo <= -0.1 + 1e-9 <= hi + 2e-9
    assert r["identical_headlines"] == 0


def test_unknown_technique_and_bad_input_exit_2(tmp_path):
    doc = {"results": [{"technique": "kv-cache", "items": items([0.1])}]}
    rc, _, err = run(tmp_path, doc, "--techniques", "int3")
    assert rc == 2 and "int3" in err
    rc, _, err = run(tmp_path, {"results": []})
    assert rc == 2 and "no bench results" in err
    rc, _, err = run(tmp_path, {"results": [{"technique": "kv-cache", "items": [{"id": 0}]}]}, "--baseline", "kv-cache")
    assert rc == 2 and "rougeL" in err
