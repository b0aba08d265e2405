"""What a caption's rewrite costs, relative to captioning it, on the same backend in one process.

The tiny random-weight Qwen3-VL on CPU (transformers backend) captions unseen videos (the sample
clips under new paths each round: decoding included, as in a real run) and, as the enhancement
op given text only, rewrites captions (``detailed`` preset); both generate exactly
``--new-tokens`` tokens per request, so the ratio compares one caption with one rewrite of the
same length. Rounds interleave the two, their order alternating, so that the machine's load hits
both alike; the load average is recorded. The rewrites' input is a fixed set of captioned rows
(no result store: every round generates again).

``python -m bench.enhancement_cost [--requests N] [--rounds R] [--new-tokens T]``; writes
``bench/results/enhancement_cost.json`` and the block of ``docs/performance.md`` between the
markers below.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from bench.measure import RESULTS_DIR, load, save, spread, stopwatch
from bench.overhead import run
from bench.workload import Workload, batches, request_paths, samples_for

DOC = Path(__file__).resolve().parents[1] / "docs" / "performance.md"
BEGIN = "<!-- enhancement_cost: written by python -m bench.enhancement_cost -->"
END = "<!-- /enhancement_cost -->"


def captioned_rows(op, paths: list[str]) -> dict[str, list]:
    """The captioning op's output for ``paths`` as one batch (dict of lists)."""
    out: dict[str, list] = {}
    for batch in batches(paths, op.batch_size):
        for key, values in op.process(samples_for(batch)).items():
            out.setdefault(key, []).extend(values)
    return out


def measure(requests: int, rounds: int, new_tokens: int, folder: Path) -> dict:
    from dj_ops.ops import CaptionEnhancementMapper, VLMVideoCaptioningMapper

    workload = Workload(requests=requests, new_tokens=new_tokens)
    caption = VLMVideoCaptioningMapper(**workload.op_params(), caption_key="caption")
    enhance = CaptionEnhancementMapper(
        hf_model=workload.model_path(), caption_key="caption", seed=0, num_proc=1,
        generation_batch_size=workload.generation_batch_size,
        sampling_params=workload.sampling_params())
    rows = captioned_rows(caption, request_paths(requests, folder / "rows"))  # also warms up
    enhance.process(rows)
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    ratios, cpu_ratios, loads = [], [], []
    for index in range(rounds):
        paths = request_paths(requests, folder / f"round{index}")
        steps = {"caption": lambda p=paths: run(caption, p),
                 "rewrite": lambda: enhance.process(rows)}
        round_wall: dict[str, float] = {}
        round_cpu: dict[str, float] = {}
        for mode in (("caption", "rewrite") if index % 2 == 0 else ("rewrite", "caption")):
            with stopwatch(round_wall, round_cpu, mode), stopwatch(wall, cpu, mode):
                steps[mode]()
        ratios.append(round_wall["rewrite"] / round_wall["caption"])
        cpu_ratios.append(round_cpu["rewrite"] / round_cpu["caption"])
        loads.append(os.getloadavg()[0])
    caption.close()
    enhance.close()
    count = requests * rounds
    return {
        "workload": workload.describe() | {"rounds": rounds, "backend": "transformers (CPU)",
                                           "rewrite_model": "the captioning model, text only"},
        "seconds_per_caption": round(wall["caption"] / count, 4),
        "seconds_per_rewrite": round(wall["rewrite"] / count, 4),
        "rewrite_over_caption_wall": round(wall["rewrite"] / wall["caption"], 4),
        "rewrite_over_caption_wall_per_round": {k: round(v, 4) for k, v in
                                                spread(ratios).items()},
        "rewrite_over_caption_cpu": round(cpu["rewrite"] / cpu["caption"], 4),
        "rewrite_over_caption_cpu_per_round": {k: round(v, 4) for k, v in
                                               spread(cpu_ratios).items()},
        "load_avg_1m_during": round(statistics.mean(loads), 2),
    }


def section(result: dict) -> str:
    """The block of ``docs/performance.md`` for ``result``."""
    work = result["workload"]
    return "\n".join([
        BEGIN,
        "## Caption enhancement: a rewrite's cost relative to captioning",
        "",
        f"`python -m bench.enhancement_cost`: {work['requests']} unseen videos per round, "
        f"{work['rounds']} rounds interleaved, {work['new_tokens']} new tokens per caption and "
        f"per rewrite, the tiny random-weight Qwen3-VL on {work['backend']} for both (the "
        f"rewrite: `caption_enhancement_mapper` with the captioning model given text only, "
        f"preset `detailed`); load average {result['load_avg_1m_during']} during the run. "
        f"Results: `bench/results/enhancement_cost.json`.",
        "",
        f"- One rewrite / one caption, wall time: **{result['rewrite_over_caption_wall']}** "
        f"(per round {result['rewrite_over_caption_wall_per_round']}); "
        f"{result['seconds_per_rewrite']} s against {result['seconds_per_caption']} s.",
        f"- The op process's CPU seconds: {result['rewrite_over_caption_cpu']} (per round "
        f"{result['rewrite_over_caption_cpu_per_round']}); captioning's decoding runs in "
        "child processes and is not in it, and it generates on one torch thread (the decoders "
        "take the other core) where the rewrite, with no decoding beside it, runs one thread "
        "per core of its process: on a loaded machine those threads spend CPU waiting for "
        "each other.",
        "- A rewrite reads a few hundred prompt tokens and no video; on a real model the "
        "generated tokens dominate both, so the ratio there is about the ratio of their "
        "lengths. The tiny model's step is cheap, so decoding and vision encoding weigh more "
        "in its captions than they would on a GPU.",
        END,
    ])


def write_section(result: dict, doc: Path = DOC) -> None:
    """Replace the block between the markers in ``doc`` (appended when absent)."""
    text = doc.read_text(encoding="utf-8")
    block = section(result)
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=16, help="videos per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--save", default="enhancement_cost", help="results name ('' to not "
                                                                   "save nor write the doc)")
    parser.add_argument("--doc-only", action="store_true",
                        help="only rewrite the block of docs/performance.md from the saved "
                             "results")
    args = parser.parse_args(argv)
    if args.doc_only:
        result = load(args.save)
        write_section(result)
        return result
    with tempfile.TemporaryDirectory(prefix="dj_ops_enhancement_cost_") as folder:
        result = measure(args.requests, args.rounds, args.new_tokens, Path(folder))
    for key, value in result.items():
        print(f"{key}: {value}")
    if args.save:
        save(args.save, result)
        write_section(result)
        print(f"written: {RESULTS_DIR / (args.save + '.json')}, {DOC}")
    return result


if __name__ == "__main__":
    main()
