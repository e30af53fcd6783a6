"""tools/bench/plot_bench.py on a real (trimmed) `udaci bench --json` document."""
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "plot_bench.py")
FIXTURE = os.path.join(HERE, "..", "..", "..", "tests", "fixtures", "bench", "bench-small.json")


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)


def test_writes_three_pngs(tmp_path):
    r = run(FIXTURE, "--out", str(tmp_path), "--stem", "t", "--title", "test")
    assert r.returncode == 0, r.stderr
    paths = r.stdout.split()
    assert [os.path.basename(p) for p in paths] == ["t-speed.png", "t-memory.png", "t-quality.png"]
    for p in paths:
        with open(p, "rb") as f:
            head = f.read(8)
        assert head == b"\x89PNG\r\n\x1a\n"
        assert os.path.getsize(p) > 10_000


@pytest.mark.parametrize("content, message", [
    ("{}", "is not a udaci-bench/1 document"),
    ("not json", "cannot read"),
    (json.dumps({"schema": "udaci-bench/1", "results": []}), "has no results"),
])
def test_bad_documents_fail_with_a_message(tmp_path, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    r = run(str(bad), "--out", str(tmp_path / "out"))
    assert r.returncode == 2
    assert message in r.stderr
    assert not (tmp_path / "out").exists()
