"""examples/python: headline.py runs, and headlines.ipynb is a valid notebook
whose code cells run top to bottom."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys

import pytest

from conftest import EXAMPLES, SAMPLE_ARTICLES, needs_model

SCRIPT = EXAMPLES / "python" / "headline.py"
NOTEBOOK = EXAMPLES / "python" / "headlines.ipynb"


def run_script(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=600, env=env or os.environ.copy())


@needs_model
def test_headline_script_prints_one_line_per_summary():
    out = run_script("--input", str(SAMPLE_ARTICLES), "--limit", "2", "--batch-size", "2",
                     "--max-new-tokens", "16", "A new frog species was found in Peru.")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 3 and all(line.strip() for line in lines)
    assert "3 headlines" in out.stderr


def test_headline_script_reports_a_missing_model(tmp_path):
    out = run_script("--model", str(tmp_path / "missing.gguf"), "Some summary.")
    assert out.returncode == 1
    assert "NotFound" in out.stderr and "missing.gguf" in out.stderr
    assert out.stdout == ""


def test_headline_script_needs_input():
    out = run_script()
    assert out.returncode == 2 and "give a summary" in out.stderr


def load_notebook() -> dict:
    return json.loads(NOTEBOOK.read_text(encoding="utf-8"))


def test_notebook_is_nbformat_4():
    nb = load_notebook()
    assert nb["nbformat"] == 4 and isinstance(nb["nbformat_minor"], int)
    assert nb["metadata"]["kernelspec"]["language"] == "python"
    kinds = [c["cell_type"] for c in nb["cells"]]
    assert kinds.count("code") >= 3 and "markdown" in kinds
    for cell in nb["cells"]:
        assert isinstance(cell["source"], list) and all(isinstance(s, str) for s in cell["source"])
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] or isinstance(cell["outputs"], list)
            compile("".join(cell["source"]), f"{NOTEBOOK.name} cell {cell.get('id')}", "exec")
    try:
        import nbformat
    except ImportError:
        return  # the structural checks above stand in for the schema
    nbformat.validate(nbformat.reads(NOTEBOOK.read_text(encoding="utf-8"), as_version=4))


@needs_model
def test_notebook_cells_run(monkeypatch):
    monkeypatch.chdir(NOTEBOOK.parent)  # the notebook finds its data relative to itself
    namespace: dict = {"__name__": "__notebook__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for cell in load_notebook()["cells"]:
            if cell["cell_type"] == "code":
                exec(compile("".join(cell["source"]), str(NOTEBOOK), "exec"), namespace)
    text = out.getvalue()
    assert "summaries from" in text and "ms/headline" in text
    assert len(namespace["results"]) == len(namespace["records"]) > 0
    assert all(r.headline for r in namespace["results"])
