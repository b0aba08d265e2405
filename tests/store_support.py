"""Every result store kind for tests: ``store_url`` (a fixture parametrised over the kinds, a
factory of new store URLs) and the S3 server on loopback it needs (moto, started and stopped by
the session)."""

from __future__ import annotations

import copy
import sqlite3
import uuid
from pathlib import Path

import pytest

from dj_ops.store import open_store, parse_store_url

KINDS = ("sqlite", "folder", "s3")
BUCKET = "dj-ops-tests"


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1, one bucket; stopped when the session ends."""
    pytest.importorskip("moto", reason="the S3 store's tests need moto (pip extra 'test')")
    from dj_ops.testing.s3_server import S3Server

    with S3Server() as server:
        server.create_bucket(BUCKET)
        yield server


def url_of(kind: str, folder: Path, name: str) -> str:
    if kind == "sqlite":
        return str(folder / f"{name}.sqlite")
    if kind == "folder":
        return f"file://{folder / name}"
    return f"s3://{BUCKET}/{uuid.uuid4().hex}/{name}"


class StoreUrls:
    """New store URLs of one kind (``kind``), under the test's folder or a fresh S3 prefix."""

    def __init__(self, kind: str, folder: Path):
        self.kind, self.folder = kind, folder

    def __call__(self, name: str = "store") -> str:
        return url_of(self.kind, self.folder, name)


@pytest.fixture(params=KINDS)
def store_url(request, tmp_path, monkeypatch) -> StoreUrls:
    """A factory of new store URLs of each kind in turn; for S3, the server's credentials and
    endpoint are in the environment (inherited by subprocesses), as a real job's would be."""
    if request.param == "s3":
        for name, value in request.getfixturevalue("s3_server").env.items():
            monkeypatch.setenv(name, value)
    return StoreUrls(request.param, tmp_path)


def stored_count(url: str | Path) -> int:
    """Results stored so far (0 before the op created the store)."""
    url = str(url)
    if parse_store_url(url)[0] in ("", "sqlite"):
        try:
            with sqlite3.connect(parse_store_url(url)[1], timeout=30) as db:
                return db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        except sqlite3.OperationalError:
            return 0
    with open_store(url) as store:
        return store.count()


def stored_values(url: str) -> dict[str, dict]:
    """Every stored result, by key."""
    with open_store(url) as store:
        keys = list(store.keys())
        return store.get_many(keys)


def comparable_rows(rows) -> list[dict]:
    """Rows as two runs of one job must agree on them, sorted: without what says where and
    how a run got each caption (each record's ``worker``, each video's ``from_store`` and
    ``batching``: how this run batched its generate call, empty for a reused caption)."""
    from data_juicer.utils.constant import Fields

    from dj_ops.captioning.records import META_KEY

    comparable = []
    for row in copy.deepcopy(list(rows)):
        record = row[Fields.meta][META_KEY]
        record.pop("worker")
        for video in record["videos"]:
            video.pop("from_store")
            video.pop("batching")
        comparable.append(row)
    return sorted(comparable, key=lambda r: (r["videos"], r["text"]))
