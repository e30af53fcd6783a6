"""What HTTP costs (issue #24): headlines/s of N concurrent HTTP clients
against `udaci serve` vs N threads calling the same engine in process (the
Python module), on the same articles with the same engine configuration,
rounds alternating; and the time to the first byte of a streamed answer vs
the engine's own time to first token.

    PYTHONPATH=build/bindings/python python3 tools/bench/http_overhead.py --udaci build/src/udaci --json out.json

The server and the in-process engine never run at the same time (the server
is started for its rounds and stopped before the in-process rounds).
"""
import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time

import httpx

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "server"))
from server_util import Server  # noqa: E402
from load_test import DEFAULT_NEWS, FALLBACK_NEWS, load_summaries  # noqa: E402


async def http_round(url, summaries, clients, max_new_tokens):
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    out = [None] * len(summaries)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        next_i = 0

        async def worker():
            nonlocal next_i
            while next_i < len(summaries):
                i = next_i
                next_i += 1
                r = await client.post("/v1/headlines", json={"summary": summaries[i], "max_new_tokens": max_new_tokens})
                r.raise_for_status()
                out[i] = r.json()["results"][0]["headline"]

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - t0, out


def inproc_round(engine, summaries, clients, max_new_tokens):
    out = [None] * len(summaries)
    lock = threading.Lock()
    next_i = [0]

    def worker():
        while True:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= len(summaries):
                return
            out[i] = engine.headline(summaries[i], max_new_tokens=max_new_tokens)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, out


async def ttfb(url, summaries, max_new_tokens):
    """First byte of a streamed headline (POST /v1/headlines with "stream":
    true, its first text piece) vs the engine's own time to first token for
    that request (queue + prefill, from its final event), one at a time."""
    first, engine_ttft = [], []
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        for s in summaries:
            body = {"summary": s, "max_new_tokens": max_new_tokens, "stream": True}
            t0 = time.perf_counter()
            got_first = None
            async with client.stream("POST", "/v1/headlines", json=body) as resp:
                async for line in resp.aiter_lines():
                    if not line.startswith("data: {"):
                        continue
                    e = json.loads(line[6:])
                    if got_first is None and e.get("delta"):
                        got_first = 1e3 * (time.perf_counter() - t0)
                    if e.get("done"):
                        engine_ttft.append(e["queue_ms"] + e["prefill_ms"])
            first.append(got_first)
    return first, engine_ttft


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--udaci", default="build/src/udaci")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--articles", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    import udaci

    news = DEFAULT_NEWS if os.path.exists(DEFAULT_NEWS) else FALLBACK_NEWS
    summaries = load_summaries(news, args.articles)
    sched = {"max_sequences": args.clients}
    os.environ["UDACI_CLI"] = args.udaci
    rows = {"http": [], "inproc": []}
    heads = {}
    ttfb_ms = engine_ttft_ms = None
    for rnd in range(args.rounds):
        server = Server("--scheduler-opt", f"max_sequences={args.clients}", "--access-log", os.devnull,
                        threads=args.threads)
        try:
            asyncio.run(http_round(server.url, summaries[:8], args.clients, args.max_new_tokens))  # warm-up
            wall, out = asyncio.run(http_round(server.url, summaries, args.clients, args.max_new_tokens))
            rows["http"].append(len(summaries) / wall)
            heads["http"] = out
            if rnd == 0:
                ttfb_ms, engine_ttft_ms = asyncio.run(ttfb(server.url, summaries[:16], args.max_new_tokens))
        finally:
            server.stop()
        engine = udaci.HeadlineEngine(udaci.EngineConfig(threads=args.threads, scheduler_options=sched))
        inproc_round(engine, summaries[:8], args.clients, args.max_new_tokens)  # warm-up
        wall, out = inproc_round(engine, summaries, args.clients, args.max_new_tokens)
        rows["inproc"].append(len(summaries) / wall)
        heads["inproc"] = out
        del engine
    report = {
        "clients": args.clients, "articles": len(summaries), "rounds": args.rounds, "threads": args.threads,
        "max_new_tokens": args.max_new_tokens, "news": os.path.basename(news),
        "http_headlines_per_s": rows["http"], "inproc_headlines_per_s": rows["inproc"],
        "http_over_inproc_median": statistics.median(rows["http"]) / statistics.median(rows["inproc"]),
        "same_headlines_share": sum(a == b for a, b in zip(heads["http"], heads["inproc"])) / len(summaries),
        "ttfb_stream_ms_median": statistics.median(ttfb_ms),
        "engine_ttft_ms_median": statistics.median(engine_ttft_ms),
        "ttfb_ms": ttfb_ms, "engine_ttft_ms": engine_ttft_ms,
    }
    text = json.dumps(report, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
