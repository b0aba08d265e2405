"""Shared helpers of the caption-enhancement tests: captioned rows from the real captioning op,
and the enhancement op with fast test defaults (fixtures: ``tests/enhancement_fixtures.py``)."""

from __future__ import annotations

from data_juicer.utils.constant import Fields
from data_juicer.utils.mm_utils import SpecialTokens

from dj_ops.enhancement.records import ENHANCEMENT_KEY
from tests.conftest import make_op, run_op

V, E = SpecialTokens.video, SpecialTokens.eoc
FAST_REWRITE = {"max_new_tokens": 12, "min_new_tokens": 2}
# 15 s windows at 1 frame per second on a 40 s clip: 4 windows, then the merge
WINDOWS = {"window_seconds": 15.0, "window_overlap": 5.0, "fps": 1.0, "max_frames": 4}


def video_rows(videos: list[str]) -> list[dict]:
    """One row with one video per path, one row with two videos in two chunks, one without."""
    return ([{"text": f"{V} {E}", "videos": [v]} for v in videos]
            + [{"text": f"{V} first {E}{V} second {E}", "videos": videos[:2]},
               {"text": "no video here", "videos": []}])


def captioned(model: str, rows: list[dict], **params) -> list[dict]:
    """The captioning op's output rows for ``rows``."""
    return run_op(make_op(model, **params), rows)


def make_enhancer(model: str, **params):
    """The enhancement op with fast test defaults; ``params`` override them."""
    from dj_ops.ops import CaptionEnhancementMapper

    settings = {"hf_model": model, "sampling_params": dict(FAST_REWRITE), "seed": 0, **params}
    return CaptionEnhancementMapper(**settings)


def record_of(row: dict) -> dict | None:
    return (row.get(Fields.meta) or {}).get(ENHANCEMENT_KEY)
