"""The result store for a cluster: one blob per result on storage every node shares (a folder
on a shared filesystem, ``file://``, or an S3 bucket, ``s3://``; :mod:`dj_ops.store.blobs`).

Layout under the store's root::

    format.json                      {"format_version": 1, "layout": ...}
    results/ab/cd/abcd....json       one result: the key is the SHA-256 hex of what made it

Why this layout (over SQLite on NFS, or segment files with an index):

- **No locks, no shared index.** Every result is its own blob, written whole (atomically) by
  whichever process generated it; writers on many nodes never touch the same blob unless they
  captioned the same video with the same settings, and then either whole blob is right. A kill
  at any moment loses only the blobs not yet written.
- **Lookups need no listing.** A key names its blob, so reusing a micro-batch's results costs
  one read per video (a missing blob is one failed read), whatever the store's size; the reads
  of a batch run in parallel (object storage answers each in tens of milliseconds).
- **Listing stays bounded.** Only :meth:`SharedStore.count` lists. Two levels of 256 shards
  keep a million results at about 15 per folder (a filesystem's folders stay small; on S3 the
  hash prefixes also spread requests over its per-prefix rate limits).
- **A torn neighbour is harmless.** Readers never open a folder's temporary files; a blob that
  is not valid JSON (copied in by hand mid-way, or a filesystem without atomic rename) counts
  as absent: that video is captioned again and its blob rewritten.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from loguru import logger

from dj_ops.store.base import ResultStore, check_format_version
from dj_ops.store.keys import FORMAT_VERSION

FORMAT_NAME = "format.json"
RESULTS = "results"
LAYOUT = "results/KEY[0:2]/KEY[2:4]/KEY.json"
IO_THREADS = 16  # parallel reads and writes of one micro-batch
KEY = re.compile(r"[0-9a-f]{64}")


def result_name(key: str) -> str:
    """The blob of ``key`` (a SHA-256 hex digest, as :class:`ResultKeyer` makes).

    >>> result_name("ab" * 32)
    'results/ab/ab/abababababababababababababababababababababababababababababababab.json'
    """
    if not KEY.fullmatch(key):
        raise ValueError(f"a result key is a SHA-256 hex digest, not {key!r}")
    return f"{RESULTS}/{key[:2]}/{key[2:4]}/{key}.json"


class SharedStore(ResultStore):
    """Results as blobs on shared storage (any object with ``read``, ``write``, ``names``).

    :param blobs: a :class:`~dj_ops.store.blobs.FolderBlobs` or
        :class:`~dj_ops.store.blobs.S3Blobs`.
    :param where: the store's URL, for messages.
    """

    def __init__(self, blobs, where: str):
        self.blobs = blobs
        self.where = where
        self._pool = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="result-store")
        try:
            self._create_or_check()
        except BaseException:
            self.close()
            raise

    def _create_or_check(self) -> None:
        if not check_shared_format(self.blobs, self.where):  # a new store; writers racing here
            self.blobs.write(FORMAT_NAME, json.dumps(  # write the same bytes
                {"format_version": FORMAT_VERSION, "layout": LAYOUT}).encode())

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        keys = list(dict.fromkeys(keys))
        values = self._pool.map(self._get, keys)
        return {key: value for key, value in zip(keys, values) if value is not None}

    def _get(self, key: str) -> dict[str, Any] | None:
        name = result_name(key)
        raw = self.blobs.read(name)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            logger.warning(f"result store {self.where}: {name} is not whole JSON; its video "
                           "is captioned again")
            return None

    def put_many(self, items: dict[str, dict[str, Any]]) -> None:
        def put(item: tuple[str, dict]) -> None:
            key, value = item
            self.blobs.write(result_name(key), json.dumps(value, ensure_ascii=False).encode())

        list(self._pool.map(put, items.items()))  # re-raises the first write that failed

    def keys(self) -> Iterator[str]:
        for name in self.blobs.names(RESULTS):
            key = name.rsplit("/", 1)[-1].removesuffix(".json")
            if KEY.fullmatch(key):
                yield key

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def check_shared_format(blobs, where: str) -> bool:
    """Refuse a store written in another format, reading only; False when there is no store
    yet (nothing is created).

    :raises StoreFormatError: naming the fix.
    """
    raw = blobs.read(FORMAT_NAME)
    if raw is None:
        return False
    try:
        found = str(json.loads(raw)["format_version"])
    except (ValueError, KeyError, TypeError):
        found = f"unknown ({FORMAT_NAME} unreadable)"
    check_format_version(found, where, f"or delete its {FORMAT_NAME} and {RESULTS}/")
    return True
