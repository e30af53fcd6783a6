"""Every front end reaches every technique with the same words (issue #21, M12).

For every technique of the catalogue that runs in one process (each distinct
configuration once: aliases such as prune-magnitude = prune-30 are skipped), the same
recipe is given to the CLI (`udaci headline --recipe R`), the C ABI
(tests/recipes/parity_c_abi.cpp, `udaci_engine_params.recipe`) and Python
(`EngineConfig(recipe=R)`), each generating greedy headlines for the same 5
articles one at a time, 2 kernel threads. Each front end is its own CTest test
that writes OUT/<front end>.json ({technique: {"recipe", "headlines"}}) and
fails on its own errors; `compare` (run after all three) asserts that the
three files hold the same techniques and identical headlines.

    python3 parity.py cli UDACI_CLI OUT_DIR
    python3 parity.py python OUT_DIR          (PYTHONPATH: the built package)
    python3 parity.py compare OUT_DIR
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ARTICLES = HERE.parents[1] / "examples" / "data" / "sample_articles.jsonl"
N_ARTICLES = 5
MAX_NEW_TOKENS = 16
THREADS = 2
FRONT_ENDS = ("cli", "c_api", "python")


def summaries() -> list[str]:
    rows = [json.loads(line) for line in ARTICLES.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["short_description"] for r in rows[:N_ARTICLES]]


def recipe_for(technique: dict, default_model: str) -> str:
    """The recipe a front end is given for a catalogue entry (the draft model
    of spec-draft is the default model itself: same vocabulary)."""
    if technique["name"] == "spec-draft":
        quoted = default_model.replace("\\", "\\\\").replace('"', '\\"')
        return f'spec-draft{{draft_model="{quoted}"}}'
    return technique["name"]


def single_process(catalogue: list[dict]) -> list[dict]:
    """Each distinct one-process configuration once (kv-cache, sampling,
    no-prune and single-device are all the default; same_as says so)."""
    return [t for t in catalogue if not t["multi_process"] and t["available"] and t["same_as"] == t["name"]]


def write(out_dir: Path, front_end: str, results: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{front_end}.json").write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")


def run_cli(cli: str, out_dir: Path) -> int:
    (out_dir / "cli.json").unlink(missing_ok=True)
    catalogue = json.loads(subprocess.run([cli, "techniques", "--json"], check=True, capture_output=True,
                                          text=True).stdout)
    # The default model's path, as the engine resolves it.
    probe = subprocess.run([cli, "generate", "--ids", "1", "--max-new-tokens", "1"], check=True,
                           capture_output=True, text=True)
    default_model = json.loads(probe.stdout)["model"]
    results, failures = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        articles = Path(tmp) / "articles.jsonl"
        articles.write_text("".join(json.dumps({"short_description": s, "headline": "", "link": str(i)}) + "\n"
                                    for i, s in enumerate(summaries())), encoding="utf-8")
        for t in single_process(catalogue):
            recipe = recipe_for(t, default_model)
            t0 = time.monotonic()
            r = subprocess.run([cli, "--threads", str(THREADS), "headline", "--recipe", recipe, "--input",
                                str(articles), "--batch", "1", "--max-new-tokens", str(MAX_NEW_TOKENS)],
                               capture_output=True, text=True)
            lines = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
            errors = [line["error"] for line in lines if "error" in line]
            print(f"cli {t['name']}: status {r.returncode}, {len(lines)} headlines, {time.monotonic() - t0:.1f} s")
            if r.returncode != 0 or len(lines) != N_ARTICLES or errors:
                failures.append(f"{t['name']}: status {r.returncode}, {len(lines)} lines, {errors} {r.stderr[-500:]}")
                continue
            results[t["name"]] = {"recipe": None, "headlines": [line["generated"] for line in lines]}
    write(out_dir, "cli", results)
    for f in failures:
        print("FAILED", f)
    return 1 if failures or not results else 0


def run_python(out_dir: Path) -> int:
    import udaci

    (out_dir / "python.json").unlink(missing_ok=True)
    default_model = udaci.default_model_path()
    results, failures = {}, []
    texts = summaries()
    for t in single_process(udaci.techniques()):
        recipe = recipe_for(t, default_model)
        t0 = time.monotonic()
        try:
            engine = udaci.HeadlineEngine(udaci.EngineConfig(recipe=recipe, threads=THREADS))
            headlines = [engine.headline(s, max_new_tokens=MAX_NEW_TOKENS) for s in texts]
            results[t["name"]] = {"recipe": engine.recipe, "headlines": headlines}
            del engine
        except udaci.Error as e:
            failures.append(f"{t['name']}: {e}")
        print(f"python {t['name']}: {time.monotonic() - t0:.1f} s")
    write(out_dir, "python", results)
    for f in failures:
        print("FAILED", f)
    return 1 if failures or not results else 0


def compare(out_dir: Path) -> int:
    docs = {}
    for fe in FRONT_ENDS:
        path = out_dir / f"{fe}.json"
        if not path.exists():
            print(f"FAILED: {path} is missing (its test failed or did not run)")
            return 1
        docs[fe] = json.loads(path.read_text(encoding="utf-8"))
    problems = []
    names = [set(d) for d in docs.values()]
    if not all(n == names[0] for n in names):
        problems.append("the front ends ran different techniques: " +
                        ", ".join(f"{fe}: {sorted(d)}" for fe, d in docs.items()))
    compared = 0
    for name in sorted(set.intersection(*names)):
        ref = docs["cli"][name]["headlines"]
        if len(ref) != N_ARTICLES:
            problems.append(f"{name}: cli has {len(ref)} headlines")
        for fe in ("c_api", "python"):
            if docs[fe][name]["headlines"] != ref:
                problems.append(f"{name}: {fe} {docs[fe][name]['headlines']} != cli {ref}")
        if docs["c_api"][name]["recipe"] != docs["python"][name]["recipe"]:
            problems.append(f"{name}: canonical recipes differ: c_api {docs['c_api'][name]['recipe']} "
                            f"python {docs['python'][name]['recipe']}")
        compared += 1
    print(f"{compared} techniques x {N_ARTICLES} articles compared across {', '.join(FRONT_ENDS)}")
    for p in problems:
        print("FAILED", p)
    return 1 if problems or compared == 0 else 0


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "cli":
        return run_cli(argv[1], Path(argv[2]))
    if len(argv) >= 2 and argv[0] == "python":
        return run_python(Path(argv[1]))
    if len(argv) >= 2 and argv[0] == "compare":
        return compare(Path(argv[1]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
