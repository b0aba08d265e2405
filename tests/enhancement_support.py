"""Shared fixtures and helpers of the caption-enhancement tests: a tiny text-only model, the
T5-like target tokenizer, captioned rows from the real captioning op, and the enhancement op
with fast test defaults."""

from __future__ import annotations

import pytest
from data_juicer.utils.constant import Fields
from data_juicer.utils.mm_utils import SpecialTokens

from dj_ops.enhancement.records import ENHANCEMENT_KEY
from dj_ops.testing.clips import make_clip
from dj_ops.testing.tiny_text import build_t5_like_tokenizer, build_tiny_text_model
from tests.conftest import make_op, run_op

V, E = SpecialTokens.video, SpecialTokens.eoc
FAST_REWRITE = {"max_new_tokens": 12, "min_new_tokens": 2}
# 15 s windows at 1 frame per second on a 40 s clip: 4 windows, then the merge
WINDOWS = {"window_seconds": 15.0, "window_overlap": 5.0, "fps": 1.0, "max_frames": 4}


@pytest.fixture(scope="session")
def text_model(tmp_path_factory) -> str:
    return build_tiny_text_model(tmp_path_factory.mktemp("text_model") / "qwen3_text")


@pytest.fixture(scope="session")
def t5_tokenizer(tmp_path_factory) -> str:
    return build_t5_like_tokenizer(tmp_path_factory.mktemp("t5") / "t5_like")


@pytest.fixture(scope="session")
def long_clip(tmp_path_factory) -> str:
    return str(make_clip(tmp_path_factory.mktemp("long") / "long.mp4", seconds=40, fps=2,
                         faststart=True))


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
