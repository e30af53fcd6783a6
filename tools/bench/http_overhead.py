"""What HTTP costs (issue #24): headlines/s of N concurrent HTTP clients
against `udaci serve` vs N threads calling the same engine in process (the
Python module), on the same articles with the same engine configuration,
in pairs of bursts run back to back (order alternating), the ratio taken per
pair with a bootstrap interval of its median; and the time to the first byte
of a streamed answer vs the engine's own time to first token.

    PYTHONPATH=build/bindings/python python3 tools/bench/http_overhead.py --udaci build/src/udaci --json out.json

Both engines stay loaded; they never run at the same time.
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


def cpu_s(pid):
    """CPU seconds (user + system) process `pid` has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bootstrap_median_ci(values, n=2000, seed=0):
    """95% interval of the median by resampling the pairs."""
    import random
    rng = random.Random(seed)
    meds = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(n))
    return meds[int(0.025 * n)], meds[int(0.975 * n) - 1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--udaci", default="build/src/udaci")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--articles", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=6, help="passes over the articles")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--pause-s", type=float, default=0.3, help="idle time before each timed burst")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    import udaci

    news = DEFAULT_NEWS if os.path.exists(DEFAULT_NEWS) else FALLBACK_NEWS
    summaries = load_summaries(news, args.articles)
    sched = {"max_sequences": args.clients}
    os.environ["UDACI_CLI"] = args.udaci
    # Both engines are loaded for the whole run but never work at the same
    # time: each burst of `clients` articles runs over HTTP and in process
    # back to back (the order alternating), so every pair sees the same
    # articles on the same machine within seconds of each other; the ratio
    # is taken per pair, which cancels the machine's drift between pairs.
    server = Server("--scheduler-opt", f"max_sequences={args.clients}", "--access-log", os.devnull,
                    threads=args.threads)
    engine = udaci.HeadlineEngine(udaci.EngineConfig(threads=args.threads, scheduler_options=sched))
    chunks = [summaries[i:i + args.clients] for i in range(0, len(summaries), args.clients)]
    pairs = []
    heads = {"http": [None] * len(summaries), "inproc": [None] * len(summaries)}
    try:
        asyncio.run(http_round(server.url, summaries[:8], args.clients, args.max_new_tokens))  # warm-up
        inproc_round(engine, summaries[:8], args.clients, args.max_new_tokens)
        ttfb_ms, engine_ttft_ms = asyncio.run(ttfb(server.url, summaries[:16], args.max_new_tokens))
        for rnd in range(args.rounds):
            for ci, chunk in enumerate(chunks):
                rate, cpu = {}, {}
                order = ("http", "inproc") if (rnd + ci) % 2 == 0 else ("inproc", "http")
                for side in order:
                    time.sleep(args.pause_s)
                    # CPU of this process (the Python clients; in process
                    # also the engine) and of the server process.
                    c0, s0 = time.process_time(), cpu_s(server.proc.pid)
                    if side == "http":
                        wall, out = asyncio.run(http_round(server.url, chunk, args.clients, args.max_new_tokens))
                    else:
                        wall, out = inproc_round(engine, chunk, args.clients, args.max_new_tokens)
                    cpu[side] = (time.process_time() - c0, cpu_s(server.proc.pid) - s0)
                    rate[side] = len(chunk) / wall
                    heads[side][ci * args.clients:ci * args.clients + len(chunk)] = out
                pairs.append({"round": rnd, "chunk": ci, "first": order[0], "http_headlines_per_s": rate["http"],
                              "inproc_headlines_per_s": rate["inproc"],
                              "http_over_inproc": rate["http"] / rate["inproc"],
                              # CPU ms per headline: the server (HTTP), the
                              # Python HTTP clients, the in-process engine
                              # with its Python threads.
                              "http_server_cpu_ms": 1e3 * cpu["http"][1] / len(chunk),
                              "http_client_cpu_ms": 1e3 * cpu["http"][0] / len(chunk),
                              "inproc_cpu_ms": 1e3 * cpu["inproc"][0] / len(chunk)})
                print(json.dumps(pairs[-1]), file=sys.stderr, flush=True)
    finally:
        server.stop()
        del engine
    ratios = [p["http_over_inproc"] for p in pairs]
    lo, hi = bootstrap_median_ci(ratios)
    report = {
        "clients": args.clients, "articles": len(summaries), "rounds": args.rounds, "threads": args.threads,
        "max_new_tokens": args.max_new_tokens, "news": os.path.basename(news), "pairs": len(pairs),
        "http_over_inproc_median": statistics.median(ratios),
        "http_over_inproc_ci95": [lo, hi],
        "http_headlines_per_s_median": statistics.median(p["http_headlines_per_s"] for p in pairs),
        "inproc_headlines_per_s_median": statistics.median(p["inproc_headlines_per_s"] for p in pairs),
        "http_server_cpu_ms_per_headline_median": statistics.median(p["http_server_cpu_ms"] for p in pairs),
        "http_client_cpu_ms_per_headline_median": statistics.median(p["http_client_cpu_ms"] for p in pairs),
        "inproc_cpu_ms_per_headline_median": statistics.median(p["inproc_cpu_ms"] for p in pairs),
        "http_over_inproc_median_by_first": {
            side: statistics.median(p["http_over_inproc"] for p in pairs if p["first"] == side)
            for side in ("http", "inproc")},
        "same_headlines_share": sum(a == b for a, b in zip(heads["http"], heads["inproc"])) / len(summaries),
        "ttfb_stream_ms_median": statistics.median(ttfb_ms),
        "engine_ttft_ms_median": statistics.median(engine_ttft_ms),
        "ttfb_ms": ttfb_ms, "engine_ttft_ms": engine_ttft_ms,
        "per_pair": pairs,
    }
    text = json.dumps(report, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
