"""A result store: each video's captions kept on disk under a key of everything that made them,
so a killed or repeated job reuses them instead of decoding and generating again."""

from dj_ops.store.keys import FORMAT_VERSION, ResultKeyer, model_identity, video_identity
from dj_ops.store.sqlite_store import ResultStore, StoreFormatError

__all__ = [
    "FORMAT_VERSION",
    "ResultKeyer",
    "ResultStore",
    "StoreFormatError",
    "model_identity",
    "video_identity",
]
