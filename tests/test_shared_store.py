"""The result store on shared storage: kinds by URL, layout, torn neighbours, and credentials
that stay in the environment. (Resume, concurrency and crash tests run on every kind in
test_result_store.py.)"""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from data_juicer.utils.mm_utils import SpecialTokens
from loguru import logger

from dj_ops.store import SQLiteStore, open_store, parse_store_url
from dj_ops.store.blobs import FolderBlobs
from dj_ops.store.shared_store import SharedStore, result_name
from dj_ops.testing.s3_server import TEST_CREDENTIALS
from tests.conftest import make_op, run_op
from tests.store_support import stored_values

V, E = SpecialTokens.video, SpecialTokens.eoc


def key(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def test_the_url_picks_the_kind(tmp_path):
    assert isinstance(open_store(str(tmp_path / "a.sqlite")), SQLiteStore)
    assert isinstance(open_store(f"sqlite://{tmp_path / 'b.sqlite'}"), SQLiteStore)
    folder = open_store(f"file://{tmp_path / 'shared'}")
    assert isinstance(folder, SharedStore) and (tmp_path / "shared" / "format.json").is_file()
    for bad, message in [("ftp://host/x", "unknown kind 'ftp'"), ("s3://", "names no s3"),
                         ("s3://KEY:SECRET@bucket/x", "must not carry credentials"),
                         ("s3://bucket/x?access_key=K", "AWS_ACCESS_KEY_ID")]:
        with pytest.raises(ValueError, match=message):
            parse_store_url(bad)
    with pytest.raises(ValueError, match="must not carry credentials"):  # when the op is built
        make_op("Qwen/Qwen3-VL-8B-Instruct", result_store="s3://K:S@bucket/x", backend="openai",
                model_params={"api_base": "http://127.0.0.1:9/v1", "model_type": "qwen3_vl"})


def test_results_are_sharded_by_key_and_listing_skips_writes_in_flight(tmp_path):
    assert result_name(key("a")) == f"results/{key('a')[:2]}/{key('a')[2:4]}/{key('a')}.json"
    with pytest.raises(ValueError, match="SHA-256"):
        result_name("not-a-key")
    store = open_store(f"file://{tmp_path}")
    store.put_many({key(n): {"n": n} for n in "abc"})
    # a writer killed mid-write leaves its temporary file: never read, never listed
    shard = tmp_path / result_name(key("d")).rsplit("/", 1)[0]
    shard.mkdir(parents=True, exist_ok=True)
    (shard / f".{key('d')}.json.0123.tmp").write_text('{"n": "d", "cut')
    assert sorted(store.keys()) == sorted(key(n) for n in "abc") and store.count() == 3
    assert store.get_many([key("d")]) == {}
    assert not [p for p in tmp_path.rglob("*.tmp") if key("a") in p.name]  # renamed away


def test_a_torn_result_counts_as_absent(tmp_path):
    store = open_store(f"file://{tmp_path}")
    store.put_many({key("a"): {"n": "a"}, key("b"): {"n": "b"}})
    (tmp_path / result_name(key("b"))).write_text('{"n": "b", "candid')  # copied in mid-way
    messages = []
    handler = logger.add(messages.append, level="WARNING")
    try:
        assert store.get_many([key("a"), key("b")]) == {key("a"): {"n": "a"}}
    finally:
        logger.remove(handler)
    assert any("not whole JSON" in m for m in messages)
    store.put_many({key("b"): {"n": "b"}})  # captioned again: rewritten whole
    assert store.get_many([key("b")]) == {key("b"): {"n": "b"}}


def test_folder_writes_replace_whole_files(tmp_path):
    blobs = FolderBlobs(str(tmp_path))
    blobs.write("x/y.json", b"old")
    blobs.write("x/y.json", b"new")
    assert blobs.read("x/y.json") == b"new" and blobs.read("x/z.json") is None
    assert os.listdir(tmp_path / "x") == ["y.json"]


def test_s3_credentials_stay_in_the_environment(s3_server, monkeypatch, tmp_path, qwen3, videos):
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    url = "s3://dj-ops-tests/credentials-check"
    op = make_op(qwen3, keep_original_sample=False, result_store=url)
    rows = run_op(op, [{"text": f"{V} {E}", "videos": [v]} for v in videos[:2]])
    stored = stored_values(url)
    assert len(stored) == 2
    secrets = [TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"], TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]]
    written = json.dumps(rows, default=str) + json.dumps(stored) + "".join(stored)
    assert not [s for s in secrets if s in written]
    assert not [s for s in secrets if s in json.dumps(op.config, default=str)]
    # without credentials in the environment the store cannot be opened: nothing else has them
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(OSError):
        open_store(url).get_many([key("a")])
