"""Op throughput with prefetch on vs off (part 3 of ``bench_decode``).

A tiny random-weight Qwen3-VL generates on one torch thread (standing for the accelerator) while
the remaining cores decode. The number of generated tokens is calibrated so that captioning a
micro-batch takes about as long as decoding one; then the same requests go through the op with
``prefetch=0`` and ``prefetch=1``, alternately, and the best times are compared.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch
from data_juicer.utils.mm_utils import SpecialTokens

from dj_ops.backends.base import CaptionRequest
from dj_ops.ops import VLMVideoCaptioningMapper
from dj_ops.testing.tiny_models import build_tiny_model
from dj_ops.video import decode_video
from dj_ops.video.decoders import available_cores

ROUNDS = 3
PROBE_TOKENS = (8, 64)
# Smaller frames than the op's defaults: the tiny model's vision tower on one CPU thread would
# otherwise outlast decoding even at one generated token.
FRAMES = {"max_frames": 16, "max_pixels": 224 * 224, "min_pixels": 56 * 56}


def make_op(model: str, tokens: int, batch: int, workers: int, prefetch: int):
    return VLMVideoCaptioningMapper(
        hf_model=model, keep_original_sample=False, seed=0, generation_batch_size=batch,
        sampling_params={"max_new_tokens": tokens, "min_new_tokens": tokens},
        decode_workers=workers, prefetch=prefetch, **FRAMES,
    )


def generation_seconds(model: str, tokens: int, requests: list[CaptionRequest]) -> float:
    """Best of 2 ``generate`` calls on one micro-batch of decoded requests."""
    backend = make_op(model, tokens, len(requests), 1, 0).model_key()
    backend.generate(requests)
    times = []
    for _ in range(2):
        start = time.perf_counter()
        backend.generate(requests)
        times.append(time.perf_counter() - start)
    return min(times)


def calibrate(model: str, paths: list[str], batch: int, workers: int) -> tuple[int, float, float]:
    """Tokens making generation of a micro-batch last as long as decoding one, and both times."""
    op = make_op(model, 1, batch, workers, 0)
    settings = replace(op.frame_settings, size_factor=32)
    start = time.perf_counter()
    videos = [decode_video(path, settings) for path in paths[:batch]]
    decode_s = (time.perf_counter() - start) / min(workers, batch)  # decoded in parallel
    requests = [CaptionRequest(v.frames, v.transformers_metadata(), op.prompt) for v in videos]
    low, high = (generation_seconds(model, t, requests) for t in PROBE_TOKENS)
    per_token = max(1e-4, (high - low) / (PROBE_TOKENS[1] - PROBE_TOKENS[0]))
    fixed = low - PROBE_TOKENS[0] * per_token
    tokens = max(1, round((decode_s - fixed) / per_token))
    return tokens, decode_s, fixed + tokens * per_token


def run_seconds(op, paths: list[str]) -> float:
    samples = {"text": [SpecialTokens.video] * len(paths), "videos": [[p] for p in paths]}
    start = time.perf_counter()
    out = op.process_batched(samples)
    assert len(out["text"]) == len(paths)
    return time.perf_counter() - start


def prefetch_speedup(paths: list[str], batch: int, model_dir: Path) -> dict:
    """Seconds for all ``paths`` through the op with prefetch off and on, and the ratio."""
    torch.set_num_threads(1)
    workers = max(1, available_cores() - 1)
    model = build_tiny_model("qwen3_vl", model_dir)
    tokens, decode_s, generate_s = calibrate(model, paths, batch, workers)
    ops = {p: make_op(model, tokens, batch, workers, p) for p in (0, 1)}
    for op in ops.values():
        run_seconds(op, paths[:batch])  # warm: model loaded, decoding workers started
    times = {0: [], 1: []}
    for _ in range(ROUNDS):
        for prefetch, op in ops.items():
            times[prefetch].append(run_seconds(op, paths))
    off, on = min(times[0]), min(times[1])
    ideal = (decode_s + generate_s) / max(decode_s, generate_s)
    note = (f"{len(paths)} videos of up to {FRAMES['max_frames']} frames, micro-batch {batch}, "
            f"{workers} decoding worker(s), torch on "
            f"1 thread, {tokens} tokens; per micro-batch decode {decode_s:.2f} s, generate "
            f"{generate_s:.2f} s, ideal x{ideal:.2f}")
    print(f"prefetch: off {off:.1f} s, on {on:.1f} s: x{off / on:.2f} ({note})")
    return {"off_s": off, "on_s": on, "speedup": off / on, "tokens": tokens,
            "decode_s_per_micro_batch": decode_s, "generate_s_per_micro_batch": generate_s,
            "ideal": ideal, "workers": workers, "batch": batch, "requests": len(paths),
            "all_times_s": {"off": times[0], "on": times[1]}, "note": note}
