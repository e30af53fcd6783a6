"""What the repetition stop (HeadlineOptions::repetition_stop, issue #25)
changes, from two `udaci bench --json` runs of the same articles: one with
`--repetition-stop 0` (off) and one with the default (on).

    udaci bench --techniques kv-cache --samples 200 --repetition-stop 0 --json off.json
    udaci bench --techniques kv-cache --samples 200 --json on.json
    python3 tools/bench/repetition.py off.json on.json [--json out.json]

Reports, per run: the share of repetitive headlines (a word bigram, or a
word trigram, occurring twice), mean ROUGE-L, and new tokens; then the paired
difference of ROUGE-L (on - off) with a bootstrap 95% interval, and the
tokens the stop saved (a stopped headline generated its kept tokens plus the
repetition_stop tokens of the repeat it detected).
"""
import argparse
import json
import random
import re
import statistics


def words(text):
    return re.findall(r"[a-z0-9']+", text.lower())


def repeats_ngram(text, n):
    w = words(text)
    seen = set()
    for i in range(len(w) - n + 1):
        g = tuple(w[i:i + n])
        if g in seen:
            return True
        seen.add(g)
    return False


def items_of(path):
    doc = json.load(open(path))
    (res,) = [r for r in doc["results"]]
    return {it["id"]: it for it in res["items"]}, doc


def summary(items, stop_n):
    hs = [it["headline"] for it in items.values()]
    stops = sum(it["finish"] == "repetition" for it in items.values())
    new = sum(it["new_tokens"] for it in items.values())
    return {
        "articles": len(hs),
        "repetitive_bigram_share": sum(repeats_ngram(h, 2) for h in hs) / len(hs),
        "repetitive_trigram_share": sum(repeats_ngram(h, 3) for h in hs) / len(hs),
        "empty_share": sum(not h.strip() for h in hs) / len(hs),
        "rougeL_mean": statistics.mean(it["rougeL"] for it in items.values()),
        "new_tokens": new,
        "repetition_stops": stops,
        "generated_tokens": new + stop_n * stops,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("off")
    ap.add_argument("on")
    ap.add_argument("--stop", type=int, default=4, help="the on run's repetition_stop")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    off, off_doc = items_of(args.off)
    on, on_doc = items_of(args.on)
    ids = sorted(set(off) & set(on))
    assert ids, "the two runs share no article"
    off = {i: off[i] for i in ids}
    on = {i: on[i] for i in ids}
    diffs = [on[i]["rougeL"] - off[i]["rougeL"] for i in ids]
    rng = random.Random(0)
    boots = sorted(statistics.mean(rng.choices(diffs, k=len(diffs))) for _ in range(4000))
    s_off, s_on = summary(off, 0), summary(on, args.stop)
    changed = [i for i in ids if on[i]["headline"] != off[i]["headline"]]
    report = {
        "off": s_off, "on": s_on,
        "rougeL_diff_mean": statistics.mean(diffs),
        "rougeL_diff_ci95": [boots[100], boots[3899]],
        "headlines_changed": len(changed),
        "tokens_saved": s_off["generated_tokens"] - s_on["generated_tokens"],
        "tokens_saved_share": 1 - s_on["generated_tokens"] / max(1, s_off["generated_tokens"]),
        "examples": [{"off": off[i]["headline"], "on": on[i]["headline"]} for i in changed[:8]],
        "settings": {"off": off_doc.get("settings"), "on": on_doc.get("settings")},
    }
    text = json.dumps(report, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
