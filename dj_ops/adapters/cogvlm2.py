"""CogVLM2-Llama3-Caption (``THUDM/cogvlm2-llama3-caption``), CogVideoX's video captioner.

Its checkpoint ships remote code and no processor: the model builds its own inputs with
``model.build_conversation_input_ids(tokenizer, query=..., images=[video], history=[],
template_version=...)``, the video a uint8 tensor in ``C, T, H, W`` order. The model card
(CogVideo ``tools/caption/video_caption.py``) picks 24 frames with its ``chat`` strategy (one per
second) or ``base`` strategy (uniform over the first 60 s), passes the same strategy name as
``template_version``, and generates greedily with ``pad_token_id=128002``; it feeds one video at a
time, so batches here hold one video. vLLM does not serve this family.

Only checked against that documented interface: no weights can be downloaded here, and its remote
code targets transformers 4.4x and imports ``pytorchvideo``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dj_ops.adapters.base import ModelAdapter
from dj_ops.video.sampling import COGVLM2_NUM_FRAMES

PAD_TOKEN_ID = 128002
NUM_FRAMES = COGVLM2_NUM_FRAMES  # the card's strategies (dj_ops.video.sampling)
TEMPLATE_VERSIONS = ("chat", "base")  # also the names of the card's frame strategies
DEFAULT_PROMPT = "Please describe this video in detail."


def to_cthw(frames: np.ndarray):
    """``(T, H, W, C)`` uint8 frames as the ``(C, T, H, W)`` uint8 tensor the model takes."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)


class CogVLM2Adapter(ModelAdapter):
    """CogVLM2-Llama3-Caption through its remote ``build_conversation_input_ids``.

    Adapter parameter (in ``model_params``): ``template_version``, ``chat`` (default) or
    ``base``; match it with the op's ``frame_strategy`` of the same name.
    """

    name = "cogvlm2"
    model_class = "AutoModelForCausalLM"
    requires_remote_code = True
    max_batch_size = 1
    vllm_supported = False
    adapter_param_keys = ("template_version",)
    recommended_params = {
        "frame_strategy": "chat", "max_frames": NUM_FRAMES, "prompt": DEFAULT_PROMPT,
        "sampling_params": {"do_sample": False, "max_new_tokens": 2048},
    }
    hf_generate_overrides = {"pad_token_id": PAD_TOKEN_ID}

    @property
    def template_version(self) -> str:
        return self.params.get("template_version", TEMPLATE_VERSIONS[0])

    def check(self, model_params: dict[str, Any]) -> None:
        super().check(model_params)
        if self.template_version not in TEMPLATE_VERSIONS:
            raise ValueError(f"template_version must be one of {list(TEMPLATE_VERSIONS)}, "
                             f"got {self.template_version!r}")

    def hf_processor_kwargs(self) -> dict[str, Any]:
        return {}

    def load_hf_processor(self, model: str, **kwargs):
        import transformers

        tokenizer = transformers.AutoTokenizer.from_pretrained(model, **kwargs)
        tokenizer.padding_side = "left"
        return tokenizer

    def hf_tokenizer(self, processor):
        return processor

    def conversation_inputs(self, model, tokenizer, request) -> dict:
        """The remote code's inputs for one request (unbatched tensors)."""
        query = request.prompt
        if request.system_prompt:  # the template has no system turn
            query = f"{request.system_prompt}\n{query}"
        return model.build_conversation_input_ids(
            tokenizer=tokenizer, query=query, images=[to_cthw(request.frames)], history=[],
            template_version=self.template_version,
        )

    def encode_hf(self, processor, model, requests, processor_kwargs) -> dict:
        if len(requests) != 1:
            raise ValueError(f"{self.name} takes one video per generate call, got {len(requests)}")
        inputs = self.conversation_inputs(model, processor, requests[0])
        batch = {key: inputs[key].unsqueeze(0).to(model.device)
                 for key in ("input_ids", "token_type_ids", "attention_mask")}
        batch["images"] = [[inputs["images"][0].to(model.device, model.dtype)]]
        return batch
