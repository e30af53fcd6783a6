"""tools/bench/recommendations.py: the verdicts follow the measurements they are given.

The inputs are built from real documents (tests/fixtures/bench: a `udaci tune` result and a
`udaci bench` result), edited so that each claim holds in one case and fails in another."""
import copy
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "recommendations.py")
FIX = os.path.join(HERE, "..", "..", "..", "tests", "fixtures", "bench")


def tune_doc(chosen_recipe, scenario, extra=()):
    doc = json.load(open(os.path.join(FIX, "tune-small.json")))
    doc["scenario"] = scenario
    c = doc["candidates"][doc["chosen"]]
    c["recipe"] = chosen_recipe
    doc["candidates"], doc["chosen"], doc["pareto"] = [c], 0, [0]
    for recipe, verdict, why in extra:
        e = copy.deepcopy(c)
        e.update(recipe=recipe, verdict=verdict, why=why, misses=["ROUGE-L -0.05 vs fp32 < -0.020"])
        e["full"]["latency_p95_ms"] = c["full"]["latency_p95_ms"] * 1.5
        doc["candidates"].append(e)
    # Weights as tune measures them: the file's blocks at 92 MB, fp32 at 513 MB (5.7 bits).
    fp32 = copy.deepcopy(c)
    fp32.update(recipe="kv-cache+no-quant+no-prune+greedy", verdict="pareto", full=None,
                weights={"weight_mb": 513.0, "mean_kld": 0.0, "top1_agreement": 1.0})
    doc["candidates"].append(fp32)
    for x in doc["candidates"]:
        if x["recipe"].split("+")[1] == "as-stored":
            x["weights"] = {"weight_mb": 92.0, "mean_kld": 0.006, "top1_agreement": 0.95}
    return doc


def cluster_doc(tp_speed):
    doc = json.load(open(os.path.join(FIX, "bench-small.json")))
    base = doc["results"][1]
    res = []
    for name, factor in (("kv-cache", 1.0), ("tp-2", tp_speed), ("pp-2", 0.5)):
        r = copy.deepcopy(base)
        r["technique"] = name
        r["headlines_per_s"] = base["headlines_per_s"] * factor
        res.append(r)
    doc["results"] = res
    return doc


def run(tmp_path, docs, cluster):
    args = [sys.executable, SCRIPT]
    for name, doc in docs.items():
        p = tmp_path / f"{name}.json"
        p.write_text(json.dumps(doc))
        args += [f"--{name}", str(p)]
    c = tmp_path / "cluster.json"
    c.write_text(json.dumps(cluster))
    r = subprocess.run(args + ["--cluster", str(c)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_claims_hold_when_the_choices_are_what_the_report_said(tmp_path):
    docs = {
        "edge": tune_doc("kv-cache+int4+prune-2of4+greedy", "edge"),
        "server": tune_doc("paged-prefix+as-stored+no-prune+greedy", "server"),
        "realtime": tune_doc("paged-prefix+as-stored+no-prune+spec-lookup", "realtime",
                             [("paged-prefix+as-stored+no-prune+greedy", "feasible", "slower")]),
        "cost": tune_doc("paged-prefix+int4+no-prune+greedy", "cost"),
    }
    md = run(tmp_path, docs, cluster_doc(1.4))
    assert md.startswith("# Deployment recommendations, measured")
    assert "5.7 bits per weight" in md
    for scenario in ("| edge |", "| server |", "| realtime |", "| cost |", "| cluster |"):
        assert scenario in md
    assert md.count("**Claim holds here.**") == 3  # edge, server, realtime
    assert "**Claim holds here** (a cluster" in md  # tp-2 at 1.4x
    assert "speculation is 1.50x on p95" in md


def test_claims_fail_when_the_measurements_disagree(tmp_path):
    docs = {
        "edge": tune_doc("kv-cache+as-stored+no-prune+greedy", "edge",
                         [("kv-cache+int4+prune-2of4+greedy", "infeasible", "misses: ROUGE-L")]),
        "server": tune_doc("paged-prefix+no-quant+no-prune+greedy", "server"),
        "realtime": tune_doc("paged-prefix+as-stored+no-prune+greedy", "realtime"),
        "cost": tune_doc("paged-prefix+int4+no-prune+greedy", "cost"),
    }
    md = run(tmp_path, docs, cluster_doc(0.8))
    # Edge: 4-bit (the file's 5.7-bit blocks) without pruning, and why the pruned one lost.
    assert "pruning: no" in md and "Pruned candidates lost: infeasible" in md
    assert "**Claim partly holds here.**" in md  # edge (4-bit, no pruning) and server (cache, fp32)
    assert md.count("**Claim does not hold here.**") == 1  # realtime chose no speculation
    assert "**Claim does not hold here** (a cluster" in md


def test_a_wrong_file_is_refused(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    r = subprocess.run([sys.executable, SCRIPT, "--edge", str(bad), "--server", str(bad), "--realtime", str(bad),
                        "--cost", str(bad)], capture_output=True, text=True)
    assert r.returncode != 0
    assert "is not a udaci-tune/1 document" in r.stderr


def test_the_decoding_options_a_scenario_searched_are_tabled(tmp_path):
    edge = tune_doc("kv-cache+as-stored+no-prune+greedy", "edge")
    edge["space"]["repetition_stops"] = [8, 0]
    c = edge["candidates"][0]
    off = copy.deepcopy(c)
    off.update(repetition_stop=0, verdict="infeasible", misses=["18.0% degenerate headlines > 15.0%"])
    off["full"]["degenerate_share"] = 0.18
    edge["candidates"].append(off)
    pen = copy.deepcopy(c)
    pen.update(recipe="kv-cache+as-stored+no-prune+greedy{repetition_penalty=1.15}", verdict="feasible",
               misses=[])
    edge["candidates"].append(pen)
    docs = {
        "edge": edge,
        "server": tune_doc("paged-prefix+as-stored+no-prune+greedy", "server"),
        "realtime": tune_doc("paged-prefix+as-stored+no-prune+spec-lookup", "realtime"),
        "cost": tune_doc("paged-prefix+int4+no-prune+greedy", "cost"),
    }
    md = run(tmp_path, docs, cluster_doc(0.8))
    assert "## Decoding options" in md
    table = md[md.index("**edge** (weights `as-stored+no-prune`"):md.index("## Charts")]
    assert "| 1 | off | 18% |" in table and "infeasible: 18.0% degenerate" in table
    assert "| 1.15 | 8 |" in table
    assert "| chosen |" in table
    # The other scenarios searched one stop and one penalty: no table of theirs.
    assert "**server**" not in md
    # Without a second decoding measured, no section at all.
    docs["edge"] = tune_doc("kv-cache+as-stored+no-prune+greedy", "edge")
    assert "## Decoding options" not in run(tmp_path, docs, cluster_doc(0.8))
