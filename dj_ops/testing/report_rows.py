"""Synthetic output rows of the captioning op, for the report's tests and its build-time bench.

Rows are made by the op's own record builders (:func:`~dj_ops.captioning.records.build_record`,
:class:`~dj_ops.captioning.records.VideoOutcome`) and strips by
:func:`~dj_ops.video.thumbnails.frame_strip` from frames of noise (the largest JPEGs: the worst
case for a report's size), so they have exactly the fields and types of a real run's rows.
"""

from __future__ import annotations

import random

import numpy as np

from dj_ops.captioning.records import (
    STATUS_CAPTIONED,
    STATUS_ERROR,
    RunInfo,
    VideoOutcome,
    build_record,
    with_record,
)
from dj_ops.video.thumbnails import ThumbnailSettings, frame_strip

RUN = RunInfo("tiny/qwen3_vl", "transformers", {"do_sample": False, "max_new_tokens": 64},
              "random_any")
ERROR_KINDS = ("missing_file", "decode_error", "timeout", "not_a_video")
FLAGS = ("truncated", "repetition", "garbage", "refusal")
WORDS = "a dog runs along the beach while waves roll in under a grey sky near".split()


EVERY_VIDEO = ThumbnailSettings(share=1.0)


def noise_strip(rng: np.random.Generator, frames: int = 8) -> dict:
    """A strip of ``frames`` frames of noise at 252x448 (what the op decodes at by default)."""
    pixels = rng.integers(0, 256, size=(frames, 252, 448, 3), dtype=np.uint8)
    return frame_strip(pixels, [i * 0.5 for i in range(frames)], EVERY_VIDEO)


def synthetic_rows(count: int, *, seed: int = 0, failed: float = 0.05, flagged: float = 0.1,
                   strips: int = 16, start: float = 1.8e9) -> list[dict]:
    """``count`` one-video rows: a share failed, a share flagged, the rest clean, each with
    timing (results 0.1 s apart); ``strips`` distinct strips are made and reused round-robin
    (making one per row would dominate a 10,000-row run's setup time)."""
    rng = random.Random(seed)
    pixels = np.random.default_rng(seed)
    made = [noise_strip(pixels) for _ in range(max(1, strips))]
    rows = []
    for i in range(count):
        path = f"/data/videos/clip_{i:06d}.mp4"
        timing = {"decode_s": rng.uniform(0.05, 0.4), "generate_s": rng.uniform(0.1, 0.5),
                  "finished": start + 0.1 * i}
        roll = rng.random()
        if roll < failed:
            outcome = VideoOutcome(path, error_kind=rng.choice(ERROR_KINDS),
                                   error_message="synthetic failure", timing=timing)
            record = build_record(STATUS_ERROR, RUN, "Describe the video.", [outcome], -1)
            text = "<__dj__video> <|__dj__eoc|>"
        else:
            flags = (rng.choice(FLAGS),) if roll < failed + flagged else ()
            timestamps = tuple(round(0.5 * k, 3) for k in range(8))
            outcome = VideoOutcome(path, timestamps, 40, False, timing=timing,
                                   frames={"count": 8, "height": 252, "width": 448},
                                   attempts=(flags,), thumbnail=made[i % len(made)])
            record = build_record(STATUS_CAPTIONED, RUN, "Describe the video.", [outcome], -1)
            caption = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 40)))
            text = f"<__dj__video> {caption} <|__dj__eoc|>"
        rows.append({"text": text, "videos": [path],
                     "__dj__meta__": with_record({}, record)})
    return rows
