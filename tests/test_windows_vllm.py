"""Windows and the merge on vLLM's CPU engine (``pytest -m vllm`` in ``.venv-vllm``): a long
generated clip is captioned window by window through ``dj-process``, each window's prompt
carrying its true timestamps, and the window captions are merged by a text-only request (a prompt
without ``multi_modal_data``) on the same engine."""

from __future__ import annotations

import pytest

vllm = pytest.importorskip("vllm")

from data_juicer.utils.constant import Fields  # noqa: E402

from dj_ops.backends.base import BackendConfig, CaptionRequest  # noqa: E402
from dj_ops.backends.vllm_backend import VLLMBackend  # noqa: E402
from dj_ops.captioning.generation import parse_sampling_params  # noqa: E402
from dj_ops.captioning.records import META_KEY  # noqa: E402
from dj_ops.testing.clips import make_clip  # noqa: E402
from dj_ops.testing.tiny_models import VLLM_HEAD_DIM, build_tiny_model  # noqa: E402
from tests.test_dj_process import run_recipe  # noqa: E402
from tests.vllm_support import ENGINE, FRAMES, frame_settings  # noqa: E402

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def qwen3_hd32(tmp_path_factory) -> str:
    return build_tiny_model("qwen3_vl", tmp_path_factory.mktemp("hd32") / "qwen3_vl",
                            head_dim=VLLM_HEAD_DIM)


@pytest.mark.composes("vllm", "windows", "caption_key")
def test_windows_and_merge_on_the_vllm_engine(tmp_path, qwen3_hd32):
    long = str(make_clip(tmp_path / "long.mp4", seconds=40, fps=2, faststart=True))
    short = str(make_clip(tmp_path / "short.mp4", seconds=6, fps=2))
    params = {"hf_model": qwen3_hd32, "backend": "vllm", **FRAMES, "model_params": ENGINE,
              "sampling_params": {"max_new_tokens": 8}, "caption_key": "caption",
              "window_seconds": 15.0, "window_overlap": 5.0, "fps": 1.0, "max_frames": 4}
    rows = run_recipe(tmp_path, [{"text": "", "videos": [long]}, {"text": "", "videos": [short]}],
                      params)
    by_video = {row["videos"][0]: row for row in rows}
    windows = by_video[long]["caption_windows"][0]
    assert [(w["start"], w["end"]) for w in windows] == [(0, 15), (10, 25), (20, 35), (30, 40)]
    assert all(w["caption"] and not w["error_kind"] for w in windows)
    record = by_video[long][Fields.meta][META_KEY]
    assert record["status"] == "captioned" and record["videos"][0]["windows"] == windows
    assert by_video[long]["caption"][0].strip()  # the merged caption
    assert by_video[long]["caption"][0] not in [w["caption"] for w in windows]
    (short_window,) = by_video[short]["caption_windows"][0]
    assert short_window["caption"] == by_video[short]["caption"][0]  # no merge


def test_text_only_request_on_the_engine(qwen3_hd32):
    """The merge's request: a prompt without multi_modal_data, through the same engine as the
    video requests."""
    settings = parse_sampling_params({"max_new_tokens": 8}, 1)
    config = BackendConfig(qwen3_hd32, settings, num_candidates=1, seed=None,
                           model_params=dict(ENGINE), frame_settings=frame_settings("qwen3_vl"))
    backend = VLLMBackend(config)
    try:
        (result,) = backend.generate([CaptionRequest(None, {}, "[0.0 s - 15.0 s] a dog runs.")])
    finally:
        backend.close()
    assert result.ok and result.candidates[0].text.strip()


@pytest.mark.composes("vllm", "windows", "frame_budget", "caption_key")
def test_each_window_is_fitted_to_the_budget_on_the_engine(tmp_path, qwen3_hd32):
    """``max_visual_tokens`` per window on the engine: each window's frames are cut (frames
    first) until its tokens, Qwen3-VL's timestamp text included, fit; every window captioned."""
    from tests.conftest import make_op, run_op

    long = str(make_clip(tmp_path / "long.mp4", seconds=40, fps=2, faststart=True))
    op = make_op(qwen3_hd32, backend="vllm", **FRAMES, model_params=ENGINE,
                 sampling_params={"max_new_tokens": 8}, caption_key="caption",
                 window_seconds=15.0, window_overlap=5.0, fps=1.0, max_visual_tokens=60,
                 keep_original_sample=False)
    (row,) = run_op(op, [{"text": "", "videos": [long]}])
    windows = row["caption_windows"][0]
    assert len(windows) == 4 and row["caption"][0].strip()
    for window in windows:
        used = window["frames"]
        assert window["caption"] and not window["error_kind"]
        assert used["reduced"] in ("frames", "pixels") and used["count"] < FRAMES["max_frames"]
        assert 0 < used["visual_tokens"] <= used["max_visual_tokens"] == 60
