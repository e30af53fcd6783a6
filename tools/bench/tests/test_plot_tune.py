"""tools/bench/plot_tune.py on a real `udaci tune` result (tests/fixtures/bench/tune-small.json,
written by the example_tune test: two candidates on the bundled articles)."""
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "plot_tune.py")
FIXTURE = os.path.join(HERE, "..", "..", "..", "tests", "fixtures", "bench", "tune-small.json")


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)


def test_writes_the_pareto_png(tmp_path):
    out = tmp_path / "sub" / "pareto.png"
    r = run(FIXTURE, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(out)
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(out) > 20_000


@pytest.mark.parametrize("content, message", [
    ("{}", "is not a udaci-tune/1 document"),
    ("[1, 2", "cannot read"),
    (json.dumps({"schema": "udaci-tune/1", "candidates": [{"full": None}]}), "no fully measured candidate"),
])
def test_bad_documents_fail_with_a_message(tmp_path, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    r = run(str(bad), "--out", str(tmp_path / "out.png"))
    assert r.returncode == 2
    assert message in r.stderr
    assert not (tmp_path / "out.png").exists()
