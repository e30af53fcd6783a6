"""Load and soak test of `udaci serve` (issue #24): many concurrent clients,
a share of them leaving mid-stream, every completed headline checked against
the one the server gives for that article alone, and the server's state and
memory checked afterwards.

    python3 tests/server/load_test.py --udaci build/src/udaci --clients 64 --requests 2000 --json out.json
    python3 tests/server/load_test.py --udaci build/src/udaci --model tiny.gguf --requests 10000 --rss-at 1000

It starts `udaci serve` itself (batch-invariant scheduler, so a headline does
not depend on its batch), takes the references one request at a time, then
runs --requests requests from --clients asyncio clients over httpx: most are
POST /v1/headlines (compared with the reference), --disconnect of them are
streamed chat completions of the same article that close the connection after
the first event. Afterwards /metrics must show no live or queued sequence and
no request in flight. RSS of the server is read (/proc) after --rss-at
requests and at the end. Exit status 0 when every check passed; a JSON report
with --json.
"""
import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time

import httpx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server_util import Server  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_NEWS = os.path.join(HERE, "..", "..", "..", "shared", "assets", "news", "news_category_sample.jsonl")
FALLBACK_NEWS = os.path.join(HERE, "..", "..", "examples", "data", "sample_articles.jsonl")


def load_summaries(path, n):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                s = json.loads(line).get("short_description", "").strip()
            except json.JSONDecodeError:
                continue
            if len(s) >= 40:
                out.append(s)
            if len(out) >= n:
                break
    return out


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def metric(url, name):
    text = httpx.get(url + "/metrics", timeout=30).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)


async def run(args):
    news = args.news if args.news else (DEFAULT_NEWS if os.path.exists(DEFAULT_NEWS) else FALLBACK_NEWS)
    summaries = load_summaries(news, args.articles)
    assert summaries, f"no summaries in {news}"
    extra = ["--scheduler-opt", "batch_invariant=1", "--scheduler-opt", f"max_sequences={args.batch}",
             "--max-queue", str(max(args.clients * 2, 64)), "--timeout-s", "600", "--access-log", os.devnull]
    if args.model:
        extra += ["--model", args.model]
    os.environ["UDACI_CLI"] = args.udaci
    server = Server(*extra, threads=args.threads)
    report = {"clients": args.clients, "requests": args.requests, "disconnect_share": args.disconnect,
              "articles": len(summaries), "batch": args.batch, "threads": args.threads,
              "model": args.model or "default", "news": os.path.basename(news)}
    try:
        url = server.url
        limits = httpx.Limits(max_connections=args.clients + 8, max_keepalive_connections=args.clients + 8)
        async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
            # References: each article alone.
            refs = []
            for s in summaries:
                r = await client.post("/v1/headlines", json={"summary": s, "max_new_tokens": args.max_new_tokens})
                r.raise_for_status()
                refs.append(r.json()["results"][0]["headline"])
            rng = random.Random(args.seed)
            plan = [(i % len(summaries), rng.random() < args.disconnect) for i in range(args.requests)]
            stats = {"completed": 0, "disconnected": 0, "errors": 0, "mismatches": 0}
            latencies = []
            examples = []
            rss = {"start_mb": rss_mb(server.proc.pid)}
            next_i = 0
            done = 0
            t0 = time.perf_counter()

            async def one(i):
                art, leave = plan[i]
                if leave:
                    body = {"messages": [{"role": "user", "content": "Write a headline for: " + summaries[art]}],
                            "max_tokens": args.max_new_tokens, "temperature": 0, "stream": True}
                    async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
                        if resp.status_code != 200:
                            stats["errors"] += 1
                            return
                        async for line in resp.aiter_lines():
                            if line.startswith("data: "):
                                break  # first event: leave
                    stats["disconnected"] += 1
                    return
                t = time.perf_counter()
                r = await client.post("/v1/headlines", json={"summary": summaries[art],
                                                             "max_new_tokens": args.max_new_tokens})
                if r.status_code != 200:
                    stats["errors"] += 1
                    if len(examples) < 5:
                        examples.append({"status": r.status_code, "body": r.text[:300]})
                    return
                latencies.append(time.perf_counter() - t)
                stats["completed"] += 1
                got = r.json()["results"][0]["headline"]
                if got != refs[art]:
                    stats["mismatches"] += 1
                    if len(examples) < 5:
                        examples.append({"article": art, "reference": refs[art], "got": got})

            async def worker():
                nonlocal next_i, done
                while next_i < len(plan):
                    i = next_i
                    next_i += 1
                    try:
                        await one(i)
                    except httpx.HTTPError as e:
                        stats["errors"] += 1
                        if len(examples) < 5:
                            examples.append({"request": i, "error": repr(e)})
                    done += 1
                    if args.rss_at and done == args.rss_at:
                        rss[f"after_{args.rss_at}_mb"] = rss_mb(server.proc.pid)

            await asyncio.gather(*(worker() for _ in range(args.clients)))
            wall = time.perf_counter() - t0
        # The server's state once the clients are gone.
        deadline = time.time() + 60
        state = {}
        while time.time() < deadline:
            state = {k: metric(url, k) for k in ("udaci_live_sequences", "udaci_queue_depth",
                                                 "udaci_in_flight_requests", "udaci_client_disconnects_total")}
            if state["udaci_live_sequences"] == 0 and state["udaci_queue_depth"] == 0 and \
                    state["udaci_in_flight_requests"] == 0:
                break
            await asyncio.sleep(0.2)
        rss["end_mb"] = rss_mb(server.proc.pid)
        report.update(stats)
        report.update({
            "wall_s": wall,
            "headlines_per_s": stats["completed"] / wall if wall > 0 else 0,
            "latency_p50_ms": 1e3 * statistics.median(latencies) if latencies else None,
            "latency_p95_ms": 1e3 * statistics.quantiles(latencies, n=20)[18] if len(latencies) >= 20 else None,
            "after_run": state, "rss": rss, "examples": examples,
        })
        checks = {
            "no_errors": stats["errors"] == 0,
            "every_headline_equals_alone": stats["mismatches"] == 0,
            "all_requests_accounted": stats["completed"] + stats["disconnected"] + stats["errors"] == args.requests,
            "no_live_sequences": state.get("udaci_live_sequences") == 0,
            "nothing_queued": state.get("udaci_queue_depth") == 0,
            "nothing_in_flight": state.get("udaci_in_flight_requests") == 0,
        }
        if args.rss_at and f"after_{args.rss_at}_mb" in rss:
            ratio = rss["end_mb"] / rss[f"after_{args.rss_at}_mb"]
            report["rss_end_over_checkpoint"] = ratio
            checks["rss_within_5_percent"] = ratio <= 1.05
        report["checks"] = checks
    finally:
        report["exit_status"] = server.stop(timeout=120)
    report["checks"]["clean_exit"] = report["exit_status"] == 0
    return report


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--udaci", default=os.environ.get("UDACI_CLI", "build/src/udaci"))
    ap.add_argument("--model", default="", help="model for the server (default: the default model)")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--disconnect", type=float, default=0.2, help="share of clients that leave mid-stream")
    ap.add_argument("--articles", type=int, default=40, help="distinct articles, cycled")
    ap.add_argument("--news", default="", help="News Category Dataset JSONL (default: the shared sample)")
    ap.add_argument("--batch", type=int, default=16, help="the scheduler's max_sequences")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--rss-at", type=int, default=0, help="read RSS after this many requests too")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    report = asyncio.run(run(args))
    text = json.dumps(report, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    print(text)
    failed = [k for k, ok in report["checks"].items() if not ok]
    if failed:
        print("FAILED: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
