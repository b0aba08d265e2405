"""A result store: each video's captions kept under a key of everything that made them, so a
killed or repeated job reuses them instead of decoding and generating again. The kind of store
(one machine's SQLite file, or a folder or bucket every node of a cluster shares) follows the
``result_store`` URL (:mod:`dj_ops.store.kinds`)."""

from dj_ops.store.base import ResultStore, StoreFormatError
from dj_ops.store.keys import FORMAT_VERSION, ResultKeyer, model_identity, video_identity
from dj_ops.store.kinds import STORE_KINDS, check_store, open_store, parse_store_url
from dj_ops.store.sqlite_store import SQLiteStore

__all__ = [
    "FORMAT_VERSION",
    "STORE_KINDS",
    "ResultKeyer",
    "ResultStore",
    "SQLiteStore",
    "StoreFormatError",
    "check_store",
    "model_identity",
    "open_store",
    "parse_store_url",
    "video_identity",
]
