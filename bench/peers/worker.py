"""One engine in its own process, driven by bench/peers/peers.py over stdin/stdout.

Each line on stdin is a JSON command; each answer is one JSON line on stdout:

  {"cmd": "run", "prompts": [...], "batch": B, "max_new": N, "eos": [ids]}
      -> {"ok": true, "wall_s": ..., "items": [{"ids": [...], "n_new": ..,
          "ttft_s": .., "decode_s": .., "first_to_last": ..}]}
  {"cmd": "quit"}

`prompts` are token-id lists for the peers and summaries for udaci (which builds
the very same ids itself; the worker checks that they are equal). Every engine
decodes greedily, stops at the same end ids or after `max_new` tokens, and
counts the end token as a generated token. Per item at batch 1: `ttft_s` is the
time from the call to the first token, `decode_s` the time from the first token
to the last, over `n_new - 1` tokens. Batched runs time the whole call only.

The engine and its settings come from the command line (see `main`). Nothing
here downloads anything: every model path is a local file or folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import deque
from typing import Dict, List, Optional, Sequence


def now() -> float:
    return time.perf_counter()


def truncate(ids: Sequence[int], eos: Sequence[int]) -> List[int]:
    out = []
    for t in ids:
        out.append(int(t))
        if t in eos:
            break
    return out


# --------------------------------------------------------------------------- udaci


class UdaciEngine:
    def __init__(self, args):
        import udaci  # the pybind11 module of this repository's build

        self.engine = udaci.Engine(
            model=args.model,
            threads=args.threads,
            decoder="greedy",
            quantizer=args.quantizer,
            cache=args.cache,
            scheduler_options={"max_sequences": str(args.max_batch)},
        )
        self.expected: Dict[str, List[int]] = {}

    def prompt_ids(self, summaries: List[str]) -> List[List[int]]:
        return [list(self.engine.prompt_ids(s)) for s in summaries]

    def detokenize(self, ids: List[List[int]]) -> List[str]:
        return [self.engine.detokenize(list(x), skip_special=True) for x in ids]

    def _check(self, r, expected: Optional[List[int]]):
        if expected is not None and list(r.prompt_ids) != list(expected):
            raise RuntimeError("udaci built other prompt ids than the ones the peers were given")

    def run(self, prompts, batch, max_new, eos, expected=None):
        items = []
        t0 = now()
        if batch == 1:
            for k, summary in enumerate(prompts):
                r = self.engine.generate([summary], max_new_tokens=max_new, stop_at_newline=False)[0]
                self._check(r, expected[k] if expected else None)
                ids = truncate(r.new_ids, eos)
                items.append({
                    "ids": ids,
                    "n_new": len(ids),
                    "ttft_s": (r.latency_ms - r.decode_ms) / 1e3,
                    "decode_s": r.decode_ms / 1e3,
                })
        else:
            # all queued at once: the scheduler batches up to max_sequences of them
            rs = self.engine.generate(list(prompts), max_new_tokens=max_new, stop_at_newline=False)
            for k, r in enumerate(rs):
                self._check(r, expected[k] if expected else None)
                ids = truncate(r.new_ids, eos)
                items.append({"ids": ids, "n_new": len(ids)})
        return items, now() - t0


# ----------------------------------------------------------------------- llama.cpp


class LlamaCppEngine:
    """llama.cpp through llama-cpp-python's C API bindings: greedy argmax over the
    logits, and for batch > 1 continuous batching with one sequence id per slot
    (what llama-server does), so a finished headline's slot takes the next article."""

    def __init__(self, args):
        import ctypes
        import numpy as np
        import llama_cpp as L

        self.L, self.np, self.ctypes = L, np, ctypes
        L.llama_backend_init()
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = 0
        mp.use_mmap = True
        self.model = L.llama_model_load_from_file(args.model.encode(), mp)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {args.model}")
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        self.slots = max(1, args.max_batch)
        self.per_seq = 512
        cp = L.llama_context_default_params()
        cp.n_ctx = self.per_seq * self.slots
        cp.n_batch = max(2048, self.per_seq * self.slots)
        cp.n_ubatch = 512
        cp.n_seq_max = self.slots
        cp.n_threads = args.threads
        cp.n_threads_batch = args.threads
        cp.no_perf = True
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create a context")
        self.mem = L.llama_get_memory(self.ctx)
        self.batch = L.llama_batch_init(cp.n_batch, 0, 1)

    def _argmax(self, i: int) -> int:
        ptr = self.L.llama_get_logits_ith(self.ctx, i)
        row = self.np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))
        return int(row.argmax())

    def _decode(self, entries):
        b = self.batch
        for k, (tok, pos, seq, want) in enumerate(entries):
            b.token[k] = tok
            b.pos[k] = pos
            b.n_seq_id[k] = 1
            b.seq_id[k][0] = seq
            b.logits[k] = 1 if want else 0
        b.n_tokens = len(entries)
        rc = self.L.llama_decode(self.ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")

    def run(self, prompts, batch, max_new, eos, expected=None):
        L = self.L
        eos = set(eos)
        n = len(prompts)
        out: List[Optional[dict]] = [None] * n
        pending = deque(range(n))
        free = list(range(min(batch, self.slots)))[::-1]
        active: Dict[int, dict] = {}
        t0 = now()
        while pending or active:
            while pending and free:
                slot = free.pop()
                i = pending.popleft()
                L.llama_memory_seq_rm(self.mem, slot, -1, -1)
                active[slot] = {"i": i, "new": [], "pos": 0, "t0": now(), "times": []}
            entries = []
            for slot, st in active.items():
                if st["pos"] == 0:
                    p = prompts[st["i"]]
                    for j, tok in enumerate(p):
                        entries.append((tok, j, slot, j == len(p) - 1))
                    st["pos"] = len(p)
                else:
                    entries.append((st["new"][-1], st["pos"], slot, True))
                    st["pos"] += 1
                st["row"] = len(entries) - 1
            self._decode(entries)
            done = []
            for slot, st in active.items():
                tok = self._argmax(st["row"])
                st["new"].append(tok)
                st["times"].append(now())
                if tok in eos or len(st["new"]) >= max_new:
                    done.append(slot)
            for slot in done:
                st = active.pop(slot)
                item = {"ids": st["new"], "n_new": len(st["new"])}
                if batch == 1:
                    item["ttft_s"] = st["times"][0] - st["t0"]
                    item["decode_s"] = st["times"][-1] - st["times"][0]
                out[st["i"]] = item
                free.append(slot)
        return out, now() - t0


# --------------------------------------------------------------------- transformers


class TransformersEngine:
    def __init__(self, args):
        import torch
        from transformers import AutoModelForCausalLM
        from transformers.generation.streamers import BaseStreamer

        torch.set_num_threads(args.threads)
        self.torch = torch
        self.model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
        self.model.eval()
        self.pad = 0

        class Clock(BaseStreamer):
            def __init__(self):
                self.times: List[float] = []

            def put(self, value):
                self.times.append(now())

            def end(self):
                pass

        self.Clock = Clock

    def run(self, prompts, batch, max_new, eos, expected=None):
        torch = self.torch
        items = []
        t0 = now()
        with torch.inference_mode():
            for start in range(0, len(prompts), batch):
                group = prompts[start:start + batch]
                width = max(len(p) for p in group)
                ids = torch.full((len(group), width), self.pad, dtype=torch.long)
                mask = torch.zeros((len(group), width), dtype=torch.long)
                for r, p in enumerate(group):  # left padding
                    ids[r, width - len(p):] = torch.tensor(p)
                    mask[r, width - len(p):] = 1
                clock = self.Clock() if batch == 1 else None
                call = now()
                out = self.model.generate(
                    input_ids=ids, attention_mask=mask, max_new_tokens=max_new, do_sample=False,
                    num_beams=1, eos_token_id=list(eos), pad_token_id=self.pad, streamer=clock)
                for r in range(len(group)):
                    new = truncate(out[r, width:].tolist(), eos)
                    item = {"ids": new, "n_new": len(new)}
                    if clock is not None:
                        # put() #0 is the prompt, #1 the first generated token
                        item["ttft_s"] = clock.times[1] - call
                        item["decode_s"] = clock.times[-1] - clock.times[1]
                    items.append(item)
        return items, now() - t0


# ---------------------------------------------------------------------- CTranslate2


class CTranslate2Engine:
    def __init__(self, args):
        import json as _json
        import ctranslate2

        self.gen = ctranslate2.Generator(args.model, device="cpu", compute_type=args.compute_type,
                                         intra_threads=args.threads, inter_threads=1)
        with open(os.path.join(args.model, "vocabulary.json"), encoding="utf-8") as f:
            self.vocab = _json.load(f)

    def run(self, prompts, batch, max_new, eos, expected=None):
        end = [self.vocab[t] for t in eos]
        toks = [[self.vocab[t] for t in p] for p in prompts]
        items = []
        t0 = now()
        if batch == 1:
            for p in toks:
                call = now()
                new, times = [], []
                for step in self.gen.generate_tokens(p, max_length=max_new, sampling_topk=1, end_token=end):
                    new.append(step.token_id)
                    times.append(now())
                # generate_tokens does not yield the end token: count it as the others do
                new = truncate(new, eos)
                if len(new) < max_new and (not new or new[-1] not in eos):
                    new.append(eos[0])
                items.append({"ids": new, "n_new": len(new), "ttft_s": times[0] - call,
                              "decode_s": times[-1] - times[0]})
        else:
            rs = self.gen.generate_batch(toks, max_batch_size=batch, max_length=max_new, sampling_topk=1,
                                         beam_size=1, include_prompt_in_result=False, end_token=end)
            for r in rs:
                new = truncate(r.sequences_ids[0], eos)
                if len(new) < max_new and (not new or new[-1] not in eos):
                    new.append(eos[0])
                items.append({"ids": new, "n_new": len(new)})
        return items, now() - t0


ENGINES = {
    "udaci": UdaciEngine,
    "llama.cpp": LlamaCppEngine,
    "transformers": TransformersEngine,
    "ctranslate2": CTranslate2Engine,
}


def peak_rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engine", required=True, choices=sorted(ENGINES))
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-batch", type=int, default=1)
    ap.add_argument("--quantizer", default="none")
    ap.add_argument("--cache", default="contiguous")
    ap.add_argument("--compute-type", default="default")
    args = ap.parse_args(argv)

    out = sys.stdout
    sys.stdout = sys.stderr  # libraries that print must not break the protocol
    t = now()
    try:
        engine = ENGINES[args.engine](args)
    except Exception as e:  # the orchestrator reports it and goes on without this engine
        out.write(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}) + "\n")
        out.flush()
        return 1
    out.write(json.dumps({"ok": True, "load_s": now() - t, "pid": os.getpid()}) + "\n")
    out.flush()
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            if cmd["cmd"] == "quit":
                break
            if cmd["cmd"] == "prompt_ids":
                reply = {"ok": True, "ids": engine.prompt_ids(cmd["summaries"])}
            elif cmd["cmd"] == "detokenize":
                reply = {"ok": True, "texts": engine.detokenize(cmd["ids"])}
            elif cmd["cmd"] == "run":
                items, wall = engine.run(cmd["prompts"], cmd["batch"], cmd["max_new"], cmd["eos"],
                                         cmd.get("expected"))
                reply = {"ok": True, "items": items, "wall_s": wall, "peak_rss_bytes": peak_rss_bytes()}
            else:
                reply = {"ok": False, "error": f"unknown command {cmd['cmd']!r}"}
        except Exception as e:
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
