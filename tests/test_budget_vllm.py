"""The frame budget on vLLM's in-process CPU engine (``pytest -m vllm`` in ``.venv-vllm``): with a
small ``max_model_len``, a high-fps clip whose frames used to be refused (``context_length``)
is decoded with fewer frames and captioned, and the prompt vLLM reports, timestamps included,
leaves ``max_new_tokens`` of the context; a video that cannot fit even at ``min_frames`` and
``min_pixels`` is refused before it reaches the engine."""

from __future__ import annotations

import pytest

vllm = pytest.importorskip("vllm")

from data_juicer.utils.constant import Fields  # noqa: E402

from dj_ops.adapters.qwen import qwen_video_tokens  # noqa: E402
from dj_ops.backends.base import BackendConfig, CaptionRequest  # noqa: E402
from dj_ops.backends.vllm_backend import VLLMBackend  # noqa: E402
from dj_ops.backends.vllm_requests import build_request, check_context  # noqa: E402
from dj_ops.captioning.generation import parse_sampling_params  # noqa: E402
from dj_ops.captioning.records import META_KEY  # noqa: E402
from dj_ops.ops.frame_budget import FrameBudget  # noqa: E402
from dj_ops.testing.clips import make_clip  # noqa: E402
from dj_ops.testing.tiny_models import VLLM_HEAD_DIM, build_tiny_model  # noqa: E402
from dj_ops.video import FrameSettings, decode_video  # noqa: E402
from tests.conftest import make_op, run_op  # noqa: E402
from tests.test_op import single_video_samples  # noqa: E402
from tests.vllm_support import ENGINE  # noqa: E402

pytestmark = pytest.mark.vllm
PROMPT = "Describe the video."
MAX_MODEL_LEN = 1024
MAX_NEW_TOKENS = 8
# 6 fps over a 5 s clip: 30 frames of 224x320 (7 x 10 patches of 32), 1050 vision tokens
FRAMES = {"fps": 6.0, "max_frames": 32, "min_frames": 4, "max_pixels": 320 * 240,
          "min_pixels": 32 * 32}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return build_tiny_model("qwen3_vl", tmp_path_factory.mktemp("hd32") / "qwen3_vl",
                            head_dim=VLLM_HEAD_DIM)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("budget_vllm") / "five_seconds_30fps.mp4"
    return str(make_clip(path, seconds=5, fps=30, width=320, height=240))


@pytest.fixture(scope="module")
def backend(model):
    frames = FrameSettings(**FRAMES, size_factor=32)
    config = BackendConfig(model, parse_sampling_params({"max_new_tokens": MAX_NEW_TOKENS}, 1),
                           model_params={**ENGINE, "max_model_len": MAX_MODEL_LEN},
                           frame_settings=frames)
    built = VLLMBackend(config)
    yield built
    built.shut_down()


def _request(video) -> CaptionRequest:
    return CaptionRequest(video.frames, video.transformers_metadata(), PROMPT)


def test_the_engine_context_is_the_backend_limit(backend):
    assert backend.context_limit == MAX_MODEL_LEN


def test_a_clip_over_the_context_is_fitted_and_its_prompt_fits(backend, clip):
    frames = FrameSettings(**FRAMES, size_factor=32)
    unfitted = decode_video(clip, frames)
    request = _request(unfitted)
    prompt = build_request(backend.adapter, request, backend.render)["prompt"]
    refused = check_context(backend.adapter, request, len(backend.tokenizer.encode(prompt)),
                            MAX_MODEL_LEN)
    assert len(unfitted.frames) == 30 and refused.error_kind == "context_length"  # as before

    budgeted = FrameBudget(frames, backend, None).for_prompts([PROMPT])
    fitted = decode_video(clip, budgeted)
    assert fitted.frame_budget["reduced"] == "frames" and len(fitted.frames) < 30
    assert fitted.frame_indices[-1] >= 140  # still spans the clip (150 frames)
    outputs = backend.llm.generate([build_request(backend.adapter, _request(fitted),
                                                  backend.render)], backend.sampling_params)
    prompt_ids = outputs[0].prompt_token_ids
    pad = backend.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert sum(token == pad for token in prompt_ids) == qwen_video_tokens(fitted.frames.shape, 32)
    assert len(prompt_ids) <= MAX_MODEL_LEN - MAX_NEW_TOKENS
    assert outputs[0].outputs[0].token_ids  # captioned


@pytest.mark.composes("vllm", "frame_budget")
def test_the_op_captions_with_fewer_frames_and_refuses_what_cannot_fit(model, clip):
    engine = {**ENGINE, "max_model_len": MAX_MODEL_LEN}
    common = dict(backend="vllm", model_params=engine, prompt=PROMPT, keep_original_sample=False,
                  sampling_params={"max_new_tokens": MAX_NEW_TOKENS})
    rows = run_op(make_op(model, **{**FRAMES, **common}), single_video_samples([clip]))
    video = rows[0][Fields.meta][META_KEY]["videos"][0]
    assert video["error_kind"] == "" and video["generated_tokens"] > 0
    used = video["frames"]
    assert used["reduced"] == "frames" and 4 <= used["count"] < 30
    assert used["visual_tokens"] <= used["max_visual_tokens"] < MAX_MODEL_LEN - MAX_NEW_TOKENS
    # 30 frames of at least 256x320 pixels each: even 30 at min_pixels cannot fit
    big = {**FRAMES, "min_frames": 30, "min_pixels": 256 * 320, "max_pixels": 256 * 320}
    rows = run_op(make_op(model, **{**big, **common}), single_video_samples([clip]))
    video = rows[0][Fields.meta][META_KEY]["videos"][0]
    assert video["error_kind"] == "context_length" and "budget" in video["error_message"]
