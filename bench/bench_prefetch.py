"""Op throughput with prefetch on vs off (part 3 of ``bench_decode``).

A tiny random-weight Qwen3-VL generates on one torch thread pinned to the first core (standing
for the accelerator) while the decoding workers are pinned to the other cores (on a machine
with an accelerator, generation leaves the cores to decoding). The number of generated tokens
is calibrated so that captioning a micro-batch takes about as long as decoding one; then the
same requests go through the op with ``prefetch`` 0, 1 and 2, taking turns, and the best times
are compared.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import torch
from data_juicer.utils.mm_utils import SpecialTokens

from dj_ops.captioning.requests import CaptionRequest
from dj_ops.ops import VLMVideoCaptioningMapper
from dj_ops.testing.tiny_models import build_tiny_model
from dj_ops.video import decode_video
from dj_ops.video.decoders import open_decode_source

ROUNDS = 3
PREFETCH = (0, 1, 2)
DECODE_TIMEOUT = 120.0
PROBE_TOKENS = (8, 64)
# Smaller frames than the op's defaults: the tiny model's vision tower on one CPU thread would
# otherwise outlast decoding even at one generated token.
FRAMES = {"max_frames": 16, "max_pixels": 224 * 224, "min_pixels": 56 * 56}


def make_op(model: str, tokens: int, batch: int, workers: int, prefetch: int):
    return VLMVideoCaptioningMapper(
        hf_model=model, keep_original_sample=False, seed=0, generation_batch_size=batch,
        sampling_params={"max_new_tokens": tokens, "min_new_tokens": tokens},
        decode_workers=workers, decode_timeout=DECODE_TIMEOUT, prefetch=prefetch, **FRAMES,
    )


def best_of(repeats: int, function, *args) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def pool_decode_seconds(paths: list[str], settings, workers: int) -> float:
    """Best time to decode ``paths`` through a pool like the op's, started here: its workers
    keep this thread's cores."""
    pool = open_decode_source("pyav", workers, DECODE_TIMEOUT)

    def decode_all():
        for ticket in [pool.submit(path, settings) for path in paths]:
            pool.result(ticket)

    try:
        decode_all()  # start the workers
        return best_of(2, decode_all)
    finally:
        pool.close()


def calibrate(model: str, settings, requests: list[CaptionRequest], decode_s: float
              ) -> tuple[int, float]:
    """Tokens making generation of a micro-batch last ``decode_s``, and its expected time."""
    seconds = []
    for tokens in PROBE_TOKENS:
        backend = make_op(model, tokens, len(requests), 1, 0).model_key()
        backend.generate(requests)
        seconds.append(best_of(2, backend.generate, requests))
    per_token = max(1e-4, (seconds[1] - seconds[0]) / (PROBE_TOKENS[1] - PROBE_TOKENS[0]))
    fixed = seconds[0] - PROBE_TOKENS[0] * per_token
    tokens = max(1, round((decode_s - fixed) / per_token))
    return tokens, fixed + tokens * per_token


def run_seconds(op, paths: list[str]) -> float:
    samples = {"text": [SpecialTokens.video] * len(paths), "videos": [[p] for p in paths]}
    start = time.perf_counter()
    out = op.process_batched(samples)
    assert len(out["text"]) == len(paths)
    return time.perf_counter() - start


def prefetch_speedup(paths: list[str], batch: int, model_dir: Path) -> dict:
    """Seconds for all ``paths`` through the op with prefetch off and on, and the ratio."""
    torch.set_num_threads(1)
    cores = sorted(os.sched_getaffinity(0))
    model_core, decode_cores = set(cores[:1]), set(cores[1:]) or set(cores)
    workers = len(decode_cores)
    model = build_tiny_model("qwen3_vl", model_dir)
    settings = replace(make_op(model, 1, batch, workers, 0).config.frames, size_factor=32)
    os.sched_setaffinity(0, decode_cores)
    decode_s = pool_decode_seconds(paths[:batch], settings, workers)
    os.sched_setaffinity(0, model_core)
    requests = [CaptionRequest(v.frames, v.transformers_metadata(), "Describe.")
                for v in (decode_video(path, settings) for path in paths[:batch])]
    tokens, generate_s = calibrate(model, settings, requests, decode_s)
    ops = {p: make_op(model, tokens, batch, workers, p) for p in PREFETCH}
    times: dict[int, list[float]] = {p: [] for p in PREFETCH}
    try:
        for op in ops.values():
            run_seconds(op, paths[:batch])  # warm: model loaded
        for _ in range(ROUNDS):
            for prefetch, op in ops.items():
                times[prefetch].append(run_seconds(op, paths))
    finally:
        os.sched_setaffinity(0, set(cores))
    best = {p: min(values) for p, values in times.items()}
    off, on = best[0], best[2]
    ideal = (decode_s + generate_s) / max(decode_s, generate_s)
    note = (f"{len(paths)} videos of up to {FRAMES['max_frames']} frames, micro-batch {batch}; "
            f"model on core {cores[0]} (1 torch thread), {workers} decoding worker(s) on the "
            f"other cores; {tokens} tokens; per micro-batch decode {decode_s:.2f} s, generate "
            f"{generate_s:.2f} s, ideal x{ideal:.2f}")
    print(f"prefetch: off {off:.1f} s, 2 ahead (default) {on:.1f} s (x{off / on:.2f}), 1 ahead "
          f"{best[1]:.1f} s (x{off / best[1]:.2f}) ({note})")
    return {"off_s": off, "on_s": on, "speedup": off / on, "speedup_prefetch_1": off / best[1],
            "tokens": tokens,
            "decode_s_per_micro_batch": decode_s, "generate_s_per_micro_batch": generate_s,
            "ideal": ideal, "workers": workers, "batch": batch, "requests": len(paths),
            "all_times_s": {f"prefetch_{p}": values for p, values in times.items()},
            "note": note}
