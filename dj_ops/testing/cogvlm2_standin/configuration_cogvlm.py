"""The stand-in's configuration (tests only): a tiny Llama plus the fields CogVLM2-Llama3-Caption's
own ``CogVLMConfig`` adds and its code reads (``vision_config``, ``template_version``).

Like the real class it names no ``model_type``, so the saved ``config.json`` has none: the
checkpoint is known by its ``architectures`` and ``auto_map``.
"""

from __future__ import annotations

from transformers import LlamaConfig


class CogVLMConfig(LlamaConfig):
    model_type = ""

    def __init__(self, vision_config: dict | None = None, template_version: str = "chat",
                 record_dir: str | None = None, **kwargs):
        """:param vision_config: ``image_size``, ``patch_size`` and ``hidden_size`` of the
            vision tower (the real model: 224, 14, ...).
        :param template_version: the default of ``build_conversation_input_ids``.
        :param record_dir: where the stand-in records what it is given (tests)."""
        self.vision_config = dict(vision_config or {"image_size": 224, "patch_size": 14,
                                                    "hidden_size": 16})
        self.template_version, self.record_dir = template_version, record_dir
        super().__init__(**kwargs)
