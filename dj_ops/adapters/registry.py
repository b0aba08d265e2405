"""The table that picks a model family's adapter from the model's ``config.json``.

Keys are ``model_type`` values (and, for checkpoints whose ``config.json`` names no
``model_type``, architecture names); a model found in neither gets the generic adapter, the safe
path of :mod:`dj_ops.adapters.generic`.
``model_params: {model_type: ...}`` forces a family, e.g. for a served model not stored locally.
"""

from __future__ import annotations

import json
import os
from typing import Any

from dj_ops.adapters.base import ModelAdapter
from dj_ops.adapters.chat_template import CHAT_TEMPLATE_FAMILIES
from dj_ops.adapters.cogvlm2 import CogVLM2Adapter
from dj_ops.adapters.qwen import Qwen2VLAdapter, Qwen3VLAdapter, Qwen25VLAdapter
from dj_ops.adapters.text_only import TEXT_ONLY, TextOnlyAdapter, is_text_only
from dj_ops.backends.model_params import ModelParams

ADAPTERS: dict[str, type[ModelAdapter]] = {
    "qwen2_vl": Qwen2VLAdapter,
    "qwen2_5_vl": Qwen25VLAdapter,
    "qwen3_vl": Qwen3VLAdapter,
    "qwen3_vl_moe": Qwen3VLAdapter,
    "cogvlm2": CogVLM2Adapter,
    "CogVLMVideoForCausalLM": CogVLM2Adapter,  # CogVLM2's config.json may carry no model_type
    **{family.name: family for family in CHAT_TEMPLATE_FAMILIES},
    TEXT_ONLY: TextOnlyAdapter,  # found by is_text_only, or forced with model_type: text
}
GENERIC_ADAPTER = ModelAdapter

MODEL_TYPE_KEY = "model_type"
# model_params keys that configure adapters; the loaders (from_pretrained, vLLM) never see them.
ADAPTER_PARAM_KEYS = frozenset(
    {MODEL_TYPE_KEY}.union(*(cls.adapter_param_keys for cls in ADAPTERS.values()))
)


def parse_model_params(params: dict[str, Any] | None) -> ModelParams:
    """Split ``model_params`` into the adapters' keys (this table decides which) and the
    backend's."""
    params = dict(params or {})
    return ModelParams(
        adapter={k: v for k, v in params.items() if k in ADAPTER_PARAM_KEYS},
        backend={k: v for k, v in params.items() if k not in ADAPTER_PARAM_KEYS},
    )


def read_model_identity(model: str, local_only: bool = False) -> list[str]:
    """``model_type`` then the architectures from the model's ``config.json``; ``[]`` when it
    cannot be read (or, with ``local_only``, when ``model`` is not a local folder)."""
    if os.path.isdir(model):
        try:
            with open(os.path.join(model, "config.json")) as file:
                config = json.load(file)
        except (OSError, ValueError):
            return []
    elif local_only:
        return []
    else:
        import transformers

        try:
            config, _ = transformers.PretrainedConfig.get_config_dict(model)
        except (OSError, ValueError):
            return []
    identity = [config.get(MODEL_TYPE_KEY)] + list(config.get("architectures") or [])
    return [key for key in identity if key]


def adapter_class(identity: list[str]) -> type[ModelAdapter]:
    """The adapter of the first key of ``identity`` in :data:`ADAPTERS`, else the text-only one
    for a text-only causal LM, else the generic one."""
    found = next((ADAPTERS[key] for key in identity if key in ADAPTERS), None)
    if found is None and is_text_only(identity):
        return TextOnlyAdapter
    return found or GENERIC_ADAPTER


def resolve_adapter(model: str, model_params: dict[str, Any] | ModelParams | None = None,
                    local_only: bool = False) -> ModelAdapter:
    """The adapter for ``model``, configured from ``model_params``.

    :param model: model id or local folder.
    :param model_params: the op's ``model_params`` (or ``BackendConfig.params``);
        ``model_type`` forces a family.
    :param local_only: never reach a hub for the config (models served elsewhere).
    :raises ValueError: for a forced ``model_type`` with no adapter.
    """
    parsed = model_params if isinstance(model_params, ModelParams) else parse_model_params(
        model_params)
    params = dict(parsed.adapter)
    forced = params.pop(MODEL_TYPE_KEY, None)
    if forced is not None and forced not in ADAPTERS:
        raise ValueError(f"model_type={forced!r} has no adapter; choose one of "
                         f"{sorted(ADAPTERS)} or leave it unset for the generic adapter")
    identity = [forced] if forced else read_model_identity(model, local_only)
    return adapter_class(identity)(params)
