"""Shared fixtures: tiny local models, sample videos, an op runner the way Data-Juicer runs it."""

from __future__ import annotations

import pytest
from datasets import Dataset

from dj_ops.testing import clips
from dj_ops.testing.clips import sample_videos
from dj_ops.testing.tiny_models import build_tiny_model
from tests.store_support import s3_server, store_url  # noqa: F401  (every result store kind)

# Small frames and few frames keep every end-to-end test well under a second per batch.
FAST_FRAMES = {"max_frames": 4, "min_frames": 2, "max_pixels": 112 * 112, "min_pixels": 28 * 28}
FAST_SAMPLING = {"max_new_tokens": 8, "min_new_tokens": 2}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tiny_models")
    return {
        family: build_tiny_model(family, root / family) for family in ("qwen2_5_vl", "qwen3_vl")
    }


@pytest.fixture(scope="session")
def qwen3(tiny_models) -> str:
    return tiny_models["qwen3_vl"]


@pytest.fixture(scope="session", autouse=True)
def generated_clips_in_pytest_tmp(tmp_path_factory):
    """Where ``../shared`` is absent (a user's clone), the stand-in clips are generated under
    pytest's temporary folder, not in a fixed folder of the machine's /tmp."""
    patch = pytest.MonkeyPatch()
    patch.setattr(clips, "GENERATED_VIDEOS_DIR", tmp_path_factory.mktemp("sample_clips"))
    yield
    patch.undo()


@pytest.fixture(scope="session")
def videos() -> list[str]:
    return [str(p) for p in sample_videos()]


def make_op(model: str, **params):
    """The op with fast test defaults; ``params`` override them."""
    from dj_ops.ops import VLMVideoCaptioningMapper

    settings = {"hf_model": model, **FAST_FRAMES, "sampling_params": dict(FAST_SAMPLING),
                "seed": 0, **params}
    return VLMVideoCaptioningMapper(**settings)


def run_op(
    op, samples: list[dict], batch_size: int = 10, num_proc: int | None = None
) -> list[dict]:
    """Run the op as Data-Juicer does: ``Dataset.map(op.process, batched=True)``."""
    dataset = Dataset.from_list(samples)
    result = dataset.map(
        op.process,
        batched=True,
        batch_size=batch_size,
        num_proc=num_proc,
        load_from_cache_file=False,
    )
    return result.to_list()
