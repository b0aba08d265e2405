"""What the result store costs the op, and what reusing it saves: ``caption_num`` 1, 16 tokens.

Three measures, in one process, rounds interleaved so that the machine's load hits all alike:

- ``plain`` vs ``store``: the op without and with a result store on videos it has not seen (every
  caption generated and written; each round uses new paths, so nothing is reused). The ratio of
  their wall times per round, and of the op process's CPU seconds (the store works in that
  process; decoding runs in child processes).
- ``store_own``: the seconds spent inside the store itself (keys, lookups, writes), timed around
  its calls, as a share of the ``store`` mode's wall time: the figure least disturbed by load.
- ``reuse``: the op with the store over videos already in it (nothing decoded nor generated).

``python -m bench.store_overhead [--requests N] [--rounds R]``
"""

from __future__ import annotations

from pathlib import Path

from bench.measure import stopwatch, time_calls
from bench.overhead import compare, ratio_fields, run
from bench.overhead import main as bench_main
from bench.workload import Workload, request_paths
from dj_ops.ops import VLMVideoCaptioningMapper
from dj_ops.store.session import StoreSession


def measure(requests: int, rounds: int, folder: Path) -> dict:
    workload = Workload(requests=requests, caption_num=1, new_tokens=16)
    store_path = folder / "store.sqlite"
    ops = {"plain": VLMVideoCaptioningMapper(**workload.op_params()),
           "store": VLMVideoCaptioningMapper(**workload.op_params(),
                                             result_store=str(store_path))}
    spent = [0.0]
    time_calls(StoreSession, ("reuse", "add", "flush"), spent)
    warm = request_paths(4, folder / "warm")
    for op in ops.values():
        run(op, warm)
    spent[0] = 0.0
    timed = compare(ops, requests, rounds, folder)  # new paths each round: unseen by the store
    wall = timed["wall"]
    store_own = spent[0]
    reuse_wall: dict[str, float] = {}
    with stopwatch(reuse_wall, {}, "reuse"):
        run(ops["store"], request_paths(requests, folder / "round0"))  # all stored
    return {
        "workload": workload.describe() | {"rounds": rounds},
        **ratio_fields(timed, "store_over_plain"),
        "store_own_seconds": round(store_own, 3),
        "store_own_share_of_store_mode": round(store_own / wall["store"], 4),
        "reuse_seconds": round(reuse_wall["reuse"], 3),
        "reuse_speedup_over_plain_round": round(wall["plain"] / rounds / reuse_wall["reuse"], 2),
        "load_avg_1m_during": timed["load"],
    }


def main(argv: list[str] | None = None) -> dict:
    return bench_main(__doc__, measure, requests=64, rounds=4, save_as="store_overhead",
                      argv=argv)


if __name__ == "__main__":
    main()
