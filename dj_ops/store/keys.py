"""Keys of the result store: a hash of everything that determines a video's captions.

A key is the SHA-256 of a canonical JSON document (sorted keys, no whitespace) holding:

- ``format``: :data:`FORMAT_VERSION`, the version of this key layout and of the stored value;
- ``video``: the video's identity, by default its absolute path, size and modification time
  (nanoseconds), or with ``content_hash`` a SHA-256 of its bytes (a renamed or copied file
  still matches, at the cost of reading it);
- ``model``: the model id and revision, or for a local folder a fingerprint of its files
  (names, sizes, modification times), so that rebuilt weights do not match;
- ``run``: prompt, system prompt, frame settings, generation settings, seed, ``caption_num``,
  the backend, and ``output``: the caption format, a dict that later options (structured
  captions, windows) extend with their own keys.

Any change of any part gives another key, so stale results are never reused: they are only
left unused in the store.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any

FORMAT_VERSION = 1
HASH_CHUNK = 1 << 20
# Files of a local checkpoint folder that decide what it generates.
MODEL_FILE_SUFFIXES = (".json", ".safetensors", ".bin", ".model", ".txt", ".py", ".jinja")


def canonical_json(value: Any) -> str:
    """``value`` as JSON with sorted keys and no whitespace (dataclasses as dicts)."""
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def file_sha256(path: str) -> str:
    """SHA-256 of the file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def video_identity(path: str, content_hash: bool = False) -> dict[str, Any] | None:
    """What identifies the video at ``path``; None when it cannot be read (such a video is
    never looked up nor stored: its error is decided again on each run)."""
    try:
        if content_hash:
            return {"sha256": file_sha256(path)}
        stat = os.stat(path)
    except OSError:
        return None
    return {"path": os.path.abspath(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def model_identity(model: str, revision: str | None = None) -> dict[str, Any]:
    """The model's identity: a local folder's fingerprint (its files' names, sizes and
    modification times), else the model id and revision."""
    if not os.path.isdir(model):
        return {"id": model, "revision": revision}
    files = []
    for root, _, names in os.walk(model):
        for name in sorted(names):
            if name.endswith(MODEL_FILE_SUFFIXES):
                full = os.path.join(root, name)
                stat = os.stat(full)
                files.append([os.path.relpath(full, model), stat.st_size, stat.st_mtime_ns])
    digest = hashlib.sha256(canonical_json(sorted(files)).encode()).hexdigest()
    return {"folder": os.path.abspath(model), "files_sha256": digest}


@dataclass(frozen=True)
class ResultKeyer:
    """Builds store keys for one op run: the parts common to every video are fixed here.

    :param model: the model's identity (:func:`model_identity`).
    :param run: everything else that decides the captions but the prompt (frame and generation
        settings, seed, caption_num, backend, system prompt, output format).
    :param content_hash: identify videos by a hash of their bytes instead of path, size and
        modification time.
    """

    model: dict[str, Any]
    run: dict[str, Any]
    content_hash: bool = False

    def key(self, path: str, prompt: str) -> str | None:
        """The key of ``path`` captioned with ``prompt``; None when the video cannot be read."""
        video = video_identity(path, self.content_hash)
        if video is None:
            return None
        document = {"format": FORMAT_VERSION, "video": video, "model": self.model,
                    "run": self.run, "prompt": prompt}
        return hashlib.sha256(canonical_json(document).encode()).hexdigest()
