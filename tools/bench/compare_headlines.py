#!/usr/bin/env python3
"""Share of articles whose headline is identical in two `udaci bench --json` runs.

    python3 tools/bench/compare_headlines.py A.json B.json [--technique-a kv-cache]
                                             [--technique-b kv-cache+batch-invariant]

Articles are matched by their line in the input (`id`); only articles present in
both runs count. Prints one JSON object: technique and batch of each side,
`compared`, `identical`, `share`, and up to five differing examples. Exit status
0, or 2 with a message for unreadable input, a missing technique or no common
articles. Used for the batch-invariance figures of docs/BENCHMARKS.md.
"""
import argparse
import json
import sys


def fail(message):
    print(f"compare_headlines: {message}", file=sys.stderr)
    sys.exit(2)


def read_results(path, fail=fail):
    """The `results` of a `udaci bench --json` document; fail(message) otherwise."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"cannot read '{path}': {e}")
    results = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(results, list) or not results:
        fail(f"'{path}' holds no bench results")
    return results


def load(path, technique):
    results = read_results(path)
    if technique is None:
        result = results[0]
    else:
        found = [r for r in results if r.get("technique") == technique]
        if not found:
            names = ", ".join(str(r.get("technique")) for r in results)
            fail(f"'{path}' has no technique '{technique}' (it has: {names})")
        result = found[0]
    items = result.get("items")
    if not isinstance(items, list):
        fail(f"'{path}': technique '{result.get('technique')}' has no items")
    by_id = {}
    for it in items:
        if isinstance(it, dict) and "id" in it and "headline" in it:
            by_id[it["id"]] = it["headline"]
    return result.get("technique"), result.get("batch"), by_id


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--technique-a")
    ap.add_argument("--technique-b")
    args = ap.parse_args(argv)
    ta, ba, ha = load(args.a, args.technique_a)
    tb, bb, hb = load(args.b, args.technique_b)
    common = sorted(set(ha) & set(hb))
    if not common:
        fail("the two runs share no articles (same --input, --samples and --seed?)")
    same = [i for i in common if ha[i] == hb[i]]
    diff = [{"id": i, "a": ha[i], "b": hb[i]} for i in common if ha[i] != hb[i]][:5]
    print(json.dumps({
        "a": {"file": args.a, "technique": ta, "batch": ba},
        "b": {"file": args.b, "technique": tb, "batch": bb},
        "compared": len(common),
        "identical": len(same),
        "share": len(same) / len(common),
        "examples": diff,
    }, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
