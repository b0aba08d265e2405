"""Read the rows of a ``dj-process`` export, whichever executor wrote it.

The default executor writes ``export_path`` as one jsonl file; the Ray executor writes a
directory of json shards (one json object per line each). :func:`read_rows` accepts both.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

SHARD_SUFFIXES = (".json", ".jsonl")


def export_files(path: str | Path) -> list[Path]:
    """The jsonl file itself, or a directory's ``.json``/``.jsonl`` shards in name order.

    :raises FileNotFoundError: when ``path`` does not exist or a directory holds no shard.
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"no dj-process export at {path}")
    shards = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in SHARD_SUFFIXES)
    if not shards:
        raise FileNotFoundError(f"{path} holds no .json/.jsonl shard")
    return shards


def read_rows(path: str | Path) -> Iterator[dict]:
    """Every row of the export at ``path`` (a jsonl file or a directory of shards)."""
    for file in export_files(path):
        with file.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)
