"""Per-family model adapters, chosen by ``model_type`` from one table."""

from dj_ops.adapters.base import ModelAdapter, chat_messages
from dj_ops.adapters.cogvlm2 import CogVLM2Adapter
from dj_ops.adapters.qwen import Qwen3VLAdapter, Qwen25VLAdapter
from dj_ops.adapters.registry import (
    ADAPTERS,
    GENERIC_ADAPTER,
    read_model_identity,
    resolve_adapter,
)

__all__ = [
    "ADAPTERS",
    "GENERIC_ADAPTER",
    "CogVLM2Adapter",
    "ModelAdapter",
    "Qwen25VLAdapter",
    "Qwen3VLAdapter",
    "chat_messages",
    "read_model_identity",
    "resolve_adapter",
]
