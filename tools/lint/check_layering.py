#!/usr/bin/env python3
"""Fails when a folder of src/ includes one it must not (issue #23).

The allowed direction (docs/architecture.md): core at the bottom; io reads
containers only; model computes a Llama model from a WeightStore through
LinearKernels and a LayerBackend and knows no strategy; the strategy folders
(cache, quant, prune, decode, parallel) know the model and core but not the
engine, which composes them. No `UDACI_WITH_CUDA` under src/model: the CUDA
backend is chosen at link time (src/kernels).

    python3 tools/lint/check_layering.py [--src src]

Prints each offending `file:line: folder -> folder` and exits 1, else 0.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

# folder -> the folders it may include (besides itself); everything else is
# refused. c_api and tools (the front ends) may include anything. A folder
# missing here is reported, so that a new one gets its rule.
_LOWER = ["core", "io", "text", "cache", "model", "quant", "prune", "kernels", "decode", "parallel"]
ALLOWED = {
    "core": set(),
    "io": {"core"},
    "text": {"core", "io"},
    "cache": {"core"},
    "model": {"core", "io", "text", "cache"},
    "quant": {"core", "io", "model", "cache"},
    "prune": {"core", "io", "model", "cache"},
    "kernels": {"core", "model", "quant"},
    "decode": {"core", "io", "text", "model", "cache", "quant", "prune"},
    "parallel": {"core", "io", "model", "cache", "quant", "prune"},
    "engine": set(_LOWER),
    "eval": set(_LOWER) | {"engine"},
    "bench": set(_LOWER) | {"engine", "eval", "udaci"},
    "server": set(_LOWER) | {"engine"},
    "tune": set(_LOWER) | {"engine", "eval", "bench", "udaci"},
    "c_api": None,
    "tools": None,
}
# macro -> folders where it must not appear
MACROS = {"UDACI_WITH_CUDA": {"model"}}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([a-z_0-9]+)/')


def check(src: str) -> list:
    problems = []
    for folder in sorted(os.listdir(src)):
        root = os.path.join(src, folder)
        if not os.path.isdir(root):
            continue
        if folder not in ALLOWED:
            problems.append(f"{root}: folder '{folder}' has no rule in check_layering.ALLOWED")
            continue
        for dirpath, _, files in os.walk(root):
            for name in sorted(files):
                if not name.endswith((".cpp", ".hpp", ".h", ".cu", ".cuh", ".inl")):
                    continue
                path = os.path.join(dirpath, name)
                with open(path, encoding="utf-8", errors="replace") as f:
                    for lineno, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        allowed = ALLOWED[folder]
                        if m and allowed is not None and m.group(1) != folder and m.group(1) not in allowed:
                            problems.append(f"{path}:{lineno}: {folder} -> {m.group(1)} ({line.strip()})")
                        for macro, where in MACROS.items():
                            if folder in where and macro in line:
                                problems.append(f"{path}:{lineno}: {macro} in src/{folder}")
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src"))
    args = ap.parse_args(argv)
    if not os.path.isdir(args.src):
        print(f"check_layering: no folder '{args.src}'", file=sys.stderr)
        return 2
    problems = check(args.src)
    for p in problems:
        print(p)
    if problems:
        print(f"check_layering: {len(problems)} include(s) against the layering", file=sys.stderr)
        return 1
    print(f"check_layering: {args.src}: every include goes an allowed way")
    return 0


if __name__ == "__main__":
    sys.exit(main())
