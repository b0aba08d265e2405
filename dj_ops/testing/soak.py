"""A long run of the op over many requests with a share of bad inputs, measuring resources.

:func:`run_soak` captions ``requests`` single-video samples, one in ``1 / bad_every`` a bad input
from the fault corpus, batch after batch as Data-Juicer calls the op, and records open file
descriptors and resident memory after every batch. Used by the slow test (which asserts the
figures stay flat after warm-up) and by ``bench/soak.py`` (which saves them).
"""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path

import psutil

from dj_ops.captioning.summary import OutcomeSummary, record_of
from dj_ops.testing.clips import make_clip
from dj_ops.testing.faults import FILE_FAULTS, build_fault_corpus

# Small frames and few tokens: the run measures bookkeeping and resources, not the model.
SOAK_PARAMS = {
    "max_frames": 2, "min_frames": 2, "fps": 1.0, "min_pixels": 28 * 28, "max_pixels": 56 * 56,
    "sampling_params": {"max_new_tokens": 4}, "generation_batch_size": 16, "seed": 0,
    "keep_original_sample": False,
}  # fmt: skip
GOOD_CLIPS = 12  # distinct good clips; every request links to one under its own name


def _inputs(folder: Path, requests: int, bad_every: int) -> list[tuple[dict, str]]:
    """``(sample, expected kind)`` per request, each good one with a path of its own."""
    bad = [c for c in build_fault_corpus(folder / "faults")
           if c.expected_kind and c.name in FILE_FAULTS and len(c.videos) == 1]
    clips = [make_clip(folder / f"clip{i}.mp4", 1 + i % 3, 6, 32 + 16 * (i % 3), 32)
             for i in range(GOOD_CLIPS)]
    inputs = []
    for i in range(requests):
        if i % bad_every == bad_every - 1:
            case = bad[(i // bad_every) % len(bad)]
            inputs.append((case.sample(), case.expected_kind))
            continue
        link = folder / f"request {i:05d}.mp4"
        if not link.exists():
            link.symlink_to(clips[i % GOOD_CLIPS])
        inputs.append(({"text": "", "videos": [str(link)]}, ""))
    return inputs


def _resources(process: psutil.Process) -> tuple[int, int]:
    """Open file descriptors and resident bytes, after a garbage collection."""
    gc.collect()
    return len(os.listdir("/proc/self/fd")), process.memory_info().rss


def _check_batch(rows: list[dict], expected: list[str]) -> None:
    """One output row per input row, captioned or failed with the expected kind."""
    if len(rows) != len(expected):
        raise AssertionError(f"{len(expected)} rows in, {len(rows)} out")
    for row, kind in zip(rows, expected):
        record = record_of(row)
        got = record["videos"][0]["error_kind"] if record["status"] == "error" else ""
        if got != kind:
            raise AssertionError(f"{row['videos']}: expected {kind!r}, got {got!r}")


def run_soak(op, folder: str | os.PathLike, requests: int = 1000, bad_every: int = 10,
             batch_size: int = 50, warmup_batches: int = 3) -> dict:
    """Run ``op`` over the soak inputs; return the figures (JSON-ready).

    :param op: a captioning op built with :data:`SOAK_PARAMS` (and a model).
    :param warmup_batches: batches before the baseline is taken (model load, caches).
    """
    inputs = _inputs(Path(folder), requests, bad_every)
    process, summary, trace = psutil.Process(), OutcomeSummary(), []
    start = time.perf_counter()
    for first in range(0, len(inputs), batch_size):
        chunk = inputs[first : first + batch_size]
        batch = {key: [sample[key] for sample, _ in chunk] for key in ("text", "videos")}
        out = op.process(batch)
        rows = [dict(zip(out, values)) for values in zip(*out.values())]
        _check_batch(rows, [kind for _, kind in chunk])
        for row in rows:
            summary.add(record_of(row))
        trace.append(_resources(process))
    seconds = time.perf_counter() - start
    (fd_base, rss_base), (fd_end, rss_end) = trace[warmup_batches - 1], trace[-1]
    return {
        "requests": len(inputs),
        "bad_inputs": sum(1 for _, kind in inputs if kind),
        "batches": len(trace),
        "seconds": round(seconds, 1),
        "requests_per_second": round(len(inputs) / seconds, 1),
        "warmup_batches": warmup_batches,
        "open_fds_after_warmup": fd_base,
        "open_fds_at_end": fd_end,
        "open_fds_max_after_warmup": max(fd for fd, _ in trace[warmup_batches - 1 :]),
        "rss_mib_after_warmup": round(rss_base / 2**20, 1),
        "rss_mib_at_end": round(rss_end / 2**20, 1),
        "rss_mib_max_after_warmup": round(max(r for _, r in trace[warmup_batches - 1 :])
                                          / 2**20, 1),
        "outcomes": summary.as_dict(),
    }
