"""Rewrites in the result store, keyed by the caption and everything that makes its rewrite.

A key is the SHA-256 of a canonical JSON document (the store's own ``canonical_json``) holding
the store's ``format`` version, ``kind: caption_enhancement`` (so a rewrite never meets a video's
captions in a shared store), the model's identity (``model_identity``: id and revision, or a
local folder's fingerprint), ``run`` (backend, its ``model_params``, the instruction, what
generation ran with, the output format and, when it can change the output, the quality gate) and
the caption itself. A re-run rewrites only captions that are new or whose settings changed. What
is stored is the generated text as the gate kept it (the store's own candidate encoding); its
finishing (loop cut, json rendering, the length bound) is redone on reuse, so a new bound alone
regenerates nothing. Failures are not stored. The store is used through its public interface
only (``get_many``, ``put_many``, ``close``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from dj_ops.captioning.requests import CaptionResult
from dj_ops.store.keys import FORMAT_VERSION, canonical_json
from dj_ops.store.session import decode_result, encode_result

KIND = "caption_enhancement"


def rewrite_key(model: dict[str, Any], run: dict[str, Any], caption: str) -> str:
    """The store key of ``caption``'s rewrite by ``model`` under ``run``."""
    document = {"format": FORMAT_VERSION, "kind": KIND, "model": model, "run": run,
                "caption": caption}
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()


@dataclass
class RewriteStore:
    """One op process's use of a result store (any kind behind the store's interface).

    :param store: an open result store (this session closes it).
    :param model: the model's identity; :param run: the run part of every key.
    ``reused`` and ``generated`` count captions since the session opened.
    """

    store: Any
    model: dict[str, Any]
    run: dict[str, Any]
    reused: int = 0
    generated: int = 0
    _pending: dict[str, dict] = field(default_factory=dict)

    def key(self, caption: str) -> str:
        return rewrite_key(self.model, self.run, caption)

    def reuse(self, captions: list[str]) -> dict[str, CaptionResult]:
        """The stored results of those ``captions`` that are in the store."""
        keys = {caption: self.key(caption) for caption in captions}
        stored = self.store.get_many(keys.values())
        found = {caption: CaptionResult(decode_result(stored[key])[0])
                 for caption, key in keys.items() if key in stored}
        self.reused += len(found)
        return found

    def add(self, caption: str, result: CaptionResult) -> None:
        """Keep a new result (failures are not stored), written by :meth:`flush`."""
        self.generated += 1
        if result.ok:
            self._pending[self.key(caption)] = encode_result(result.candidates, [])

    @property
    def pending(self) -> int:
        return len(self._pending)

    def flush(self) -> None:
        """Write the kept results (one transaction in SQLite)."""
        if self._pending:
            self.store.put_many(self._pending)
        self._pending = {}

    def close(self) -> None:
        self.flush()
        self.store.close()
