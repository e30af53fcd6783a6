"""Engine(parallel=...) over two Python processes (issue #9): rank 0
generates, rank 1 serves, and the headlines equal one process's."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import udaci

from conftest import needs_model

SUMMARIES = [
    "The city council voted on Monday to expand the bike lane network across downtown, "
    "adding 20 miles of protected lanes by 2025.",
    "Scientists found water ice in a crater near the moon's south pole, NASA said on Thursday.",
]

RANK_SCRIPT = r"""
import json, sys, udaci
plan, summaries = sys.argv[1], json.loads(sys.argv[2])
engine = udaci.Engine(recipe="no-quant", parallel=plan, parallel_options={"timeout_s": "60"})
if engine.rank == 0:
    print(json.dumps([engine.headline(s, max_new_tokens=24) for s in summaries]))
    del engine
else:
    engine.serve()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_model
def test_two_ranks_write_the_headlines_of_one_process():
    import json

    # Tensor parallelism slices dense weights: compare with the dense engine.
    engine = udaci.Engine(recipe="no-quant")
    want = [engine.headline(s, max_new_tokens=24) for s in SUMMARIES]
    assert engine.rank == 0
    engine.serve()  # no plan: returns at once
    del engine
    for plan in ("tensor-parallel", "pipeline-parallel"):
        port = _free_port()
        procs = []
        for rank in (0, 1):
            env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                       MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
            procs.append(subprocess.Popen([sys.executable, "-c", RANK_SCRIPT, plan, json.dumps(SUMMARIES)],
                                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        out0, err0 = procs[0].communicate(timeout=300)
        out1, err1 = procs[1].communicate(timeout=300)
        assert procs[0].returncode == 0, err0
        assert procs[1].returncode == 0, err1
        assert json.loads(out0) == want, plan
