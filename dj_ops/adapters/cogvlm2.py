"""CogVLM2-Llama3-Caption (``THUDM/cogvlm2-llama3-caption``), CogVideoX's video captioner.

Its checkpoint ships remote code and no processor: the model builds its own inputs with
``model.build_conversation_input_ids`` (``backends/hf_inputs.py``). The model card (CogVideo
``tools/caption/video_caption.py``) picks 24 frames with its ``chat`` strategy (one per second) or
``base`` strategy (uniform over the first 60 s), passes the same strategy name as
``template_version``, and generates greedily with ``pad_token_id=128002``; it feeds one video at a
time, so batches here hold one video. vLLM does not serve this family (no row in its table).

Its remote code needs transformers 4.42 (dj_ops needs >= 5), so it is served from its own
environment (``servers/cogvlm2``); the interface both sides use is ``cogvlm2_interface.py``.
"""

from __future__ import annotations

from typing import Any

from dj_ops.adapters.base import ModelAdapter
from dj_ops.adapters.cogvlm2_interface import PAD_TOKEN_ID, TEMPLATE_VERSIONS, query_text

DEFAULT_PROMPT = "Please describe this video in detail."


class CogVLM2Adapter(ModelAdapter):
    """CogVLM2-Llama3-Caption through its remote ``build_conversation_input_ids``.

    Adapter parameter (in ``model_params``): ``template_version``, ``chat`` (default) or
    ``base``; match it with the op's ``frame_strategy`` of the same name.
    """

    name = "cogvlm2"
    model_class = "AutoModelForCausalLM"
    requires_remote_code = True
    max_batch_size = 1
    pad_token_id = PAD_TOKEN_ID
    adapter_param_keys = ("template_version",)

    @property
    def template_version(self) -> str:
        return self.params.get("template_version", TEMPLATE_VERSIONS[0])

    def check(self, model_params: dict[str, Any]) -> None:
        super().check(model_params)
        if self.template_version not in TEMPLATE_VERSIONS:
            raise ValueError(f"template_version must be one of {list(TEMPLATE_VERSIONS)}, "
                             f"got {self.template_version!r}")

    def processor_kwargs(self) -> dict[str, Any]:
        return {}

    def query(self, request) -> str:
        """The remote code's query (a system prompt is its first line)."""
        return query_text(request.prompt, request.system_prompt)
