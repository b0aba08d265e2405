"""Fixtures of the caption-enhancement tests (``pytest_plugins`` in their modules): a tiny
text-only model, the T5-like target tokenizer, a 40 s clip for windows."""

from __future__ import annotations

import pytest

from dj_ops.testing.clips import make_clip
from dj_ops.testing.tiny_text import build_t5_like_tokenizer, build_tiny_text_model


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
