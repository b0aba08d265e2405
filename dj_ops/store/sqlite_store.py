"""The result store's embedded default, for one machine: one SQLite file in WAL mode.

Why SQLite (over LMDB or append-only segment files):

- it ships with Python: no dependency, no server;
- every write is one transaction (one micro-batch's results): after ``kill -9`` at any moment the
  next open rolls back an unfinished transaction from the write-ahead log, so the file is never
  corrupt and holds every micro-batch committed before the kill;
- several processes on one machine (``np`` > 1, Ray actors on one node) read and write it at
  once: WAL lets readers go on while one writer commits, and writers wait their turn
  (``busy_timeout``); a transaction lasts milliseconds;
- LMDB would add a dependency, and its lock file has the same limits on network filesystems;
  segment files would need compaction and an index written by hand.

Network filesystems: WAL keeps its index in shared memory beside the file (``-shm``), which
processes on different machines cannot share, and NFS's POSIX locks are not reliable, so one store
file must not be written from several machines. On a cluster use the shared store
(:mod:`dj_ops.store.shared_store`: a folder on the shared filesystem, or object storage).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from dj_ops.store.base import ResultStore, check_format_version
from dj_ops.store.keys import FORMAT_VERSION

SQLITE_FIX = "or delete this file"  # what a store of another format can do instead
BUSY_TIMEOUT_S = 120.0  # how long a writer waits for another process's transaction
LOOKUP_CHUNK = 500  # keys per SELECT (SQLite's limit on bound parameters is far above)
VERSION_NAME = "format_version"


class SQLiteStore(ResultStore):
    """Stored results by key in one SQLite file: ``put_many`` is one transaction.

    Open it in the process that uses it (a connection must not cross a fork).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = self.where = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        _use_wal(self._db)
        # NORMAL with WAL: a crash of the process loses nothing committed; only a power cut may
        # lose the last transactions, and never corrupts the file.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._create_or_check()

    def _create_or_check(self) -> None:
        with self._transaction():
            self._db.execute("CREATE TABLE IF NOT EXISTS meta "
                             "(name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, "
                             "value TEXT NOT NULL, created REAL NOT NULL)")
            row = self._db.execute("SELECT value FROM meta WHERE name = ?",
                                   (VERSION_NAME,)).fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES (?, ?)",
                                 (VERSION_NAME, str(FORMAT_VERSION)))
            else:
                check_format_version(row[0], self.path, SQLITE_FIX)

    def _transaction(self):
        return _Transaction(self._db)

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The stored values of those ``keys`` that are in the store."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), LOOKUP_CHUNK):
            chunk = keys[start:start + LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT key, value FROM results WHERE key IN ({marks})",
                                    chunk)
            found.update((key, json.loads(value)) for key, value in rows)
        return found

    def put_many(self, items: dict[str, dict[str, Any]]) -> None:
        """Store ``items`` (key -> JSON-ready value) in one transaction."""
        if not items:
            return
        now = time.time()
        rows = [(key, json.dumps(value, ensure_ascii=False), now) for key, value in items.items()]
        with self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO results VALUES (?, ?, ?)", rows)

    def keys(self) -> Iterator[str]:
        return (key for (key,) in self._db.execute("SELECT key FROM results"))

    def count(self) -> int:
        """How many results are stored."""
        return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def integrity(self) -> str:
        """SQLite's own check of the file: ``"ok"``, or what is wrong."""
        return "; ".join(r[0] for r in self._db.execute("PRAGMA integrity_check"))

    def close(self) -> None:
        self._db.close()


def check_format(path: str | os.PathLike) -> None:
    """Refuse an existing store written in another format, reading it only: nothing is created
    or written (the store's owner, the process that captions, opens it).

    :raises StoreFormatError: naming the fix.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        return
    uri = f"{Path(path).resolve().as_uri()}?mode=ro"
    db = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)
    try:
        row = db.execute("SELECT value FROM meta WHERE name = ?", (VERSION_NAME,)).fetchone()
    except sqlite3.OperationalError:  # no meta table yet: a store being created
        row = None
    finally:
        db.close()
    if row is not None:
        check_format_version(row[0], path, SQLITE_FIX)


def _use_wal(db: sqlite3.Connection) -> None:
    """Switch the file to WAL, waiting for other processes as a write would.

    Why by hand: SQLite answers ``PRAGMA journal_mode=WAL`` with SQLITE_BUSY at once, without
    calling the busy handler, while another connection converts the fresh file or holds it for a
    checkpoint (two processes opening one new store lost one of them this way, about 1 in 40).
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error): the write lock is taken at
    the start, so two processes never both read-then-write the same state."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
