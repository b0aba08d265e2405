"""Model families: adapters (facts) chosen from the table by config.json, and what each backend's
builder for a family makes of a request, exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from dj_ops.adapters import (
    GENERIC_ADAPTER,
    CogVLM2Adapter,
    Qwen3VLAdapter,
    Qwen25VLAdapter,
    read_model_identity,
    resolve_adapter,
)
from dj_ops.adapters.cogvlm2 import DEFAULT_PROMPT as COGVLM2_PROMPT
from dj_ops.adapters.qwen import qwen_prompt, qwen_video_tokens
from dj_ops.adapters.registry import parse_model_params
from dj_ops.backends.hf_inputs import HF_INPUTS, hf_inputs_for, to_cthw
from dj_ops.backends.vllm_prompts import VLLM_PROMPTS, sampled_fps, vllm_prompts_for
from dj_ops.captioning.requests import CaptionRequest
from dj_ops.video import FrameSettings
from dj_ops.video.sampling import COGVLM2_NUM_FRAMES

FRAMES = np.arange(4 * 64 * 96 * 3, dtype=np.uint32).reshape(4, 64, 96, 3).astype(np.uint8)
METADATA = {"total_num_frames": 120, "fps": 30.0, "duration": 4.0,
            "frames_indices": [0, 15, 30, 45], "width": 96, "height": 64, "video_backend": "pyav"}


def vllm(adapter):
    return vllm_prompts_for(adapter)


def request(system: str | None = None) -> CaptionRequest:
    return CaptionRequest(FRAMES, METADATA, "Describe the clip.", system, video_path="/v/a.mp4")


def write_config(folder, **config) -> str:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


# ---- choice from the table ----

def test_tiny_checkpoints_resolve_to_their_family(tiny_models):
    assert type(resolve_adapter(tiny_models["qwen2_5_vl"])) is Qwen25VLAdapter
    assert type(resolve_adapter(tiny_models["qwen3_vl"])) is Qwen3VLAdapter
    assert read_model_identity(tiny_models["qwen3_vl"]) == [
        "qwen3_vl", "Qwen3VLForConditionalGeneration"]


def test_architecture_picks_the_family_when_model_type_is_missing(tmp_path):
    folder = write_config(tmp_path / "cog", architectures=["CogVLMVideoForCausalLM"])
    assert type(resolve_adapter(folder)) is CogVLM2Adapter


@pytest.mark.parametrize("config", [{"model_type": "some_new_vlm"}, {}])
def test_unknown_or_missing_family_gets_the_generic_adapter(tmp_path, config):
    assert type(resolve_adapter(write_config(tmp_path / "m", **config))) is GENERIC_ADAPTER


def test_model_type_in_model_params_forces_the_family(tmp_path):
    folder = write_config(tmp_path / "m", model_type="llava")
    assert type(resolve_adapter(folder, {"model_type": "qwen3_vl"})) is Qwen3VLAdapter
    with pytest.raises(ValueError, match="model_type='qwen9' has no adapter; choose one of"):
        resolve_adapter(folder, {"model_type": "qwen9"})


def test_local_only_never_looks_a_hub_id_up():
    assert read_model_identity("Qwen/Qwen3-VL-8B-Instruct", local_only=True) == []
    assert type(resolve_adapter("Qwen/Qwen3-VL-8B-Instruct", local_only=True)) is GENERIC_ADAPTER


def test_adapter_params_are_split_from_loader_params():
    params = parse_model_params({"model_type": "cogvlm2", "template_version": "base",
                                 "dtype": "bfloat16", "quantization": "4bit",
                                 "processor_kwargs": {"fps": 1}})
    assert params.adapter == {"model_type": "cogvlm2", "template_version": "base"}
    assert params.loader == {"dtype": "bfloat16"}
    assert (params.quantization, params.processor_kwargs) == ("4bit", {"fps": 1})
    assert params.backend == {"dtype": "bfloat16", "quantization": "4bit",
                              "processor_kwargs": {"fps": 1}}


def test_adapter_params_of_another_family_are_refused(qwen3):
    adapter = resolve_adapter(qwen3, {"template_version": "base"})
    with pytest.raises(ValueError, match=r"\['template_version'\] do not apply to qwen3_vl"):
        adapter.check({"template_version": "base"})


# ---- Qwen families ----

def test_qwen_prompts_exactly():
    assert qwen_prompt("Describe.", None) == (
        "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>Describe.<|im_end|>\n"
        "<|im_start|>assistant\n")
    assert qwen_prompt("Describe.", "Be brief.") == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>Describe.<|im_end|>\n"
        "<|im_start|>assistant\n")
    assert vllm(Qwen25VLAdapter()).prompt(request()).startswith(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert vllm(Qwen3VLAdapter()).prompt(request()).startswith("<|im_start|>user\n")


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
@pytest.mark.parametrize("system", [None, "You caption videos for a dataset."])
def test_vllm_prompt_equals_the_family_chat_template(tiny_models, family, system):
    import transformers

    processor = transformers.AutoProcessor.from_pretrained(tiny_models[family])
    adapter = resolve_adapter(tiny_models[family])
    rendered = processor.apply_chat_template(adapter.messages(request(system)),
                                             tokenize=False, add_generation_prompt=True)
    assert vllm(adapter).prompt(request(system)) == rendered


def test_hf_messages_exactly():
    assert Qwen3VLAdapter().messages(request("Be brief.")) == [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "video"},
                                     {"type": "text", "text": "Describe the clip."}]},
    ]


def test_qwen_video_goes_to_vllm_with_its_metadata():
    frames, metadata = vllm(Qwen3VLAdapter()).video(request())
    assert frames is FRAMES
    assert metadata == {**METADATA, "do_sample_frames": False}
    assert vllm(GENERIC_ADAPTER()).video(request()) is FRAMES


def test_qwen2_5_vl_gets_the_sampling_rate_per_request():
    assert sampled_fps(METADATA) == 4 / 120 * 30.0
    assert vllm(Qwen25VLAdapter()).request_processor_kwargs(request()) == {"fps": 1.0}
    assert vllm(Qwen3VLAdapter()).request_processor_kwargs(request()) == {}


def test_processor_kwargs_per_family():
    assert Qwen25VLAdapter().processor_kwargs() == {"do_sample_frames": False,
                                                    "do_resize": False}
    assert vllm(Qwen3VLAdapter()).mm_processor_kwargs(FrameSettings()) == {
        "do_sample_frames": False, "do_resize": False, "cap_pixels_per_frame": False}
    assert CogVLM2Adapter().processor_kwargs() == {}


@pytest.mark.parametrize(
    "adapter, settings, expected",
    [
        # sqrt(200704) = 448 = 14 * 32 = 16 * 28
        (Qwen3VLAdapter(), FrameSettings(max_pixels=448 * 448, max_frames=32),
         {"count": 1, "num_frames": 32, "width": 448, "height": 448}),
        # sqrt(100000) = 316.2 -> 12 * 28 = 336 (never fewer patches than a real frame)
        (Qwen25VLAdapter(), FrameSettings(min_pixels=784, max_pixels=100_000,
                                          strategy="uniform", num_frames=8),
         {"count": 1, "num_frames": 8, "width": 336, "height": 336}),
        # generic: the op's factor (28 by default); sqrt(50000) = 223.6 -> 8 * 28 = 224
        (GENERIC_ADAPTER(), FrameSettings(min_pixels=784, max_pixels=50_000, max_frames=16),
         {"count": 1, "num_frames": 16, "width": 224, "height": 224}),
    ],
)
def test_limit_mm_per_prompt_follows_the_frame_settings(adapter, settings, expected):
    assert vllm(adapter).limit_mm_per_prompt(settings) == {"image": 0, "video": expected}


def test_video_token_counts():
    assert qwen_video_tokens((4, 224, 336, 3), 28) == 2 * 8 * 12
    assert qwen_video_tokens((5, 256, 320, 3), 32) == 3 * 8 * 10
    assert Qwen3VLAdapter().video_tokens_lower_bound((4, 64, 96, 3)) == 2 * 2 * 3
    assert GENERIC_ADAPTER().video_tokens_lower_bound((4, 64, 96, 3)) == 0


@pytest.mark.parametrize("preset", ["qwen3_vl_8b", "qwen2_5_vl_7b"])
def test_qwen_presets_build_valid_frame_settings_within_qwen_vl_utils_bounds(preset):
    """qwen-vl-utils' video bounds: 4 to 768 frames at 2 fps, 128 to 768 patches per frame."""
    op = preset_op(preset)
    factor = 32 if preset.startswith("qwen3") else 28
    settings = FrameSettings(strategy=op["frame_strategy"], fps=op["fps"],
                             min_frames=op["min_frames"], max_frames=op["max_frames"],
                             max_pixels=op["max_pixels"], total_pixels=op.get("total_pixels"),
                             size_factor=factor)
    assert settings.fps == 2.0 and 4 <= settings.min_frames <= settings.max_frames <= 768
    assert 128 * 28 * 28 <= settings.max_pixels <= 768 * factor * factor


def preset_op(name: str) -> dict:
    from pathlib import Path

    preset = Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml"
    return yaml.safe_load(preset.read_text())["process"][0]["vlm_video_captioning_mapper"]


@pytest.mark.parametrize("family, factor", [("qwen2_5_vl", 28), ("qwen3_vl", 32)])
def test_transformers_backend_uses_the_family_adapter(tiny_models, family, factor):
    from dj_ops.backends.base import BackendConfig
    from dj_ops.backends.transformers_backend import TransformersBackend
    from dj_ops.captioning.generation import GenerationSettings

    backend = TransformersBackend(BackendConfig(tiny_models[family], GenerationSettings()))
    assert backend.adapter.name == family and backend.size_factor == factor
    assert backend.videos_kwargs == backend.adapter.processor_kwargs()


# ---- CogVLM2 (documented interface only: no weights or remote code here) ----

def test_frames_go_to_cogvlm2_in_cthw_order():
    video = to_cthw(FRAMES)
    assert tuple(video.shape) == (3, 4, 64, 96) and str(video.dtype) == "torch.uint8"
    assert int(video[2, 3, 10, 20]) == int(FRAMES[3, 10, 20, 2])


class RemoteCodeStandIn:
    """Records the calls the CogVLM2 adapter makes to the remote ``build_conversation_input_ids``
    (its documented signature); the real model cannot be downloaded here."""

    import torch

    device, dtype = torch.device("cpu"), torch.bfloat16

    def __init__(self):
        self.calls = []

    def build_conversation_input_ids(self, tokenizer, *, query, images, history,
                                     template_version):
        import torch

        self.calls.append(dict(tokenizer=tokenizer, query=query, images=images,
                               history=history, template_version=template_version))
        ids = torch.tensor([5, 6, 7])
        return {"input_ids": ids, "token_type_ids": torch.zeros_like(ids),
                "attention_mask": torch.ones_like(ids), "images": [images[0].float()]}


def test_cogvlm2_builds_inputs_through_its_remote_code():
    model, tokenizer = RemoteCodeStandIn(), object()
    adapter = resolve_adapter("unused", {"model_type": "cogvlm2", "template_version": "base"})
    batch = hf_inputs_for(adapter).encode(tokenizer, model, [request("Be brief.")], {})
    call = model.calls[0]
    assert call["tokenizer"] is tokenizer and call["history"] == []
    assert call["query"] == "Be brief.\nDescribe the clip." and call["template_version"] == "base"
    assert tuple(call["images"][0].shape) == (3, 4, 64, 96)
    assert batch["input_ids"].tolist() == [[5, 6, 7]]
    assert batch["images"][0][0].dtype == RemoteCodeStandIn.dtype
    with pytest.raises(ValueError, match="one video per generate call"):
        hf_inputs_for(adapter).encode(tokenizer, model, [request(), request()], {})


def test_cogvlm2_card_settings():
    adapter = CogVLM2Adapter()
    assert adapter.pad_token_id == 128002
    assert adapter.max_batch_size == 1 and adapter.model_class == "AutoModelForCausalLM"
    assert adapter.template_version == "chat"
    assert type(hf_inputs_for(adapter)).__name__ == "CogVLM2Inputs"


def test_cogvlm2_needs_remote_code_and_a_known_template():
    with pytest.raises(ValueError, match="trust_remote_code: true"):
        CogVLM2Adapter().check({})
    with pytest.raises(ValueError, match=r"template_version must be one of \['chat', 'base'\]"):
        CogVLM2Adapter({"template_version": "video"}).check({"trust_remote_code": True})


def test_cogvlm2_preset_follows_the_model_card():
    """The card: the 'chat' strategy with the same template version, at most 24 frames, its
    prompt, greedy, 2048 new tokens."""
    op = preset_op("cogvlm2_llama3_caption")
    template = op["model_params"]["extra_body"]["template_version"]
    assert op["frame_strategy"] == "chat" == template
    assert op["max_frames"] == COGVLM2_NUM_FRAMES == 24
    assert op["prompt"] == COGVLM2_PROMPT == "Please describe this video in detail."
    assert op["sampling_params"] == {"do_sample": False, "max_new_tokens": 2048}
    # Its remote code needs transformers 4.42: the preset reaches it through its own server.
    assert op["backend"] == "openai"


# ---- the backends' builder tables ----

def test_each_family_has_a_builder_row_per_backend_that_serves_it():
    from dj_ops.adapters import ADAPTERS

    families = {cls.name for cls in ADAPTERS.values()} | {GENERIC_ADAPTER.name}
    assert set(HF_INPUTS) == families
    assert set(VLLM_PROMPTS) == families - {"cogvlm2"}
    with pytest.raises(ValueError, match="vLLM does not serve cogvlm2 models"):
        vllm_prompts_for(CogVLM2Adapter())
