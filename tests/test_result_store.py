"""The result store, every kind of it (one SQLite file; a shared folder; S3 on a loopback
server): keys, crash safety, concurrent writers, format versions, and reuse by the op (stale
results never reused), resuming a killed ``dj-process``."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
from data_juicer.utils.constant import Fields
from data_juicer.utils.mm_utils import SpecialTokens

from dj_ops.captioning.records import META_KEY
from dj_ops.export.dj_output import read_rows
from dj_ops.store import FORMAT_VERSION, ResultKeyer, StoreFormatError, open_store, parse_store_url
from dj_ops.store.keys import model_identity, video_identity
from dj_ops.store.shared_store import FORMAT_NAME
from dj_ops.testing.clips import make_clip
from tests.conftest import make_op, run_op
from tests.store_support import comparable_rows, stored_count, stored_values

V, E = SpecialTokens.video, SpecialTokens.eoc
ROOT = Path(__file__).resolve().parents[1]
RUN = {"frames": {"max_frames": 4}, "generation": {"max_new_tokens": 8}, "caption_num": 1}


def keyer(**run) -> ResultKeyer:
    return ResultKeyer(model={"id": "m", "revision": None}, run={**RUN, **run})


def test_a_key_changes_with_every_part_and_only_then(tmp_path):
    clip = str(make_clip(tmp_path / "a.mp4"))
    base = keyer().key(clip, "Describe.")
    assert base == keyer().key(clip, "Describe.") and len(base) == 64
    others = [keyer().key(clip, "Describe it."), keyer(caption_num=2).key(clip, "Describe."),
              keyer(frames={"max_frames": 8}).key(clip, "Describe."),
              keyer(generation={"max_new_tokens": 9}).key(clip, "Describe."),
              ResultKeyer({"id": "other", "revision": None}, RUN).key(clip, "Describe.")]
    assert len({base, *others}) == 6
    os.utime(clip, ns=(1, 1))  # the file changed (as far as its mtime says)
    assert keyer().key(clip, "Describe.") != base
    assert keyer().key(str(tmp_path / "missing.mp4"), "Describe.") is None


def test_content_hash_finds_a_moved_video_and_folders_are_fingerprinted(tmp_path):
    clip = make_clip(tmp_path / "a.mp4")
    hashed = ResultKeyer({"id": "m"}, RUN, content_hash=True)
    before = hashed.key(str(clip), "p")
    moved = clip.rename(tmp_path / "b.mp4")
    assert hashed.key(str(moved), "p") == before
    assert video_identity(str(moved))["path"] == str(moved)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    first = model_identity(str(folder))
    (folder / "model.safetensors").write_bytes(b"weights")
    assert model_identity(str(folder)) != first
    assert model_identity("org/name", "abc") == {"id": "org/name", "revision": "abc"}


def key(name: str) -> str:
    """A store key (a SHA-256 hex digest, as ResultKeyer makes) for a test's name."""
    return hashlib.sha256(name.encode()).hexdigest()


def test_put_get_and_reopen(store_url):
    url = store_url()
    with open_store(url) as store:
        store.put_many({key("a"): {"x": 1}, key("b"): {"x": [2]}})
        assert store.get_many([key("a"), key("c"), key("b")]) == {
            key("a"): {"x": 1}, key("b"): {"x": [2]}}
    with open_store(url) as store:
        assert store.count() == 2 and sorted(store.keys()) == sorted([key("a"), key("b")])
        if store_url.kind == "sqlite":
            assert store.integrity() == "ok"


def write_old_format(url: str) -> None:
    """Mark the store at ``url`` as written in the format version before this one."""
    old = str(FORMAT_VERSION - 1)
    if store_url_kind(url) == "sqlite":
        with sqlite3.connect(url) as db:
            db.execute("UPDATE meta SET value = ? WHERE name = 'format_version'", (old,))
        return
    with open_store(url) as store:
        store.blobs.write(FORMAT_NAME, json.dumps({"format_version": int(old)}).encode())


def store_url_kind(url: str) -> str:
    return {"": "sqlite", "sqlite": "sqlite"}.get(parse_store_url(url)[0], "shared")


def test_a_store_of_another_format_version_is_refused(store_url):
    url = store_url("old")
    open_store(url).close()
    write_old_format(url)
    with pytest.raises(StoreFormatError, match=rf"format version {FORMAT_VERSION - 1}.*new path"):
        open_store(url)
    with pytest.raises(StoreFormatError):  # the op refuses it when built
        make_op("Qwen/Qwen3-VL-8B-Instruct", result_store=url, backend="openai",
                model_params={"api_base": "http://127.0.0.1:9/v1", "model_type": "qwen3_vl"})


# Writes ``batches`` batches of 20 results, printing a line after each: a test kills it on
# those lines, never after a sleep.
WRITER = textwrap.dedent("""
    import hashlib, sys
    from dj_ops.store import open_store
    store = open_store(sys.argv[1])
    name, batches = sys.argv[2], int(sys.argv[3])
    for b in range(batches):
        store.put_many({hashlib.sha256(f"{name}-{b}-{i}".encode()).hexdigest():
                        {"id": f"{name}-{b}-{i}", "text": "x" * 500} for i in range(20)})
        print(b, flush=True)
    print("done", flush=True)
""")


def writer(url: str, name: str, batches: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", WRITER, url, name, str(batches)],
                            env=env, stdout=subprocess.PIPE, text=True)


def finished(proc: subprocess.Popen) -> str:
    """The writer's last line, once it exits."""
    return proc.communicate(timeout=300)[0].strip().splitlines()[-1]


def stored_ids(url: str) -> list[str]:
    """The ids of every stored value, each value checked whole and under its own key."""
    values = stored_values(url)
    assert all(key(value["id"]) == k and value["text"] == "x" * 500
               for k, value in values.items())
    if store_url_kind(url) == "sqlite":
        with open_store(url) as store:
            assert store.integrity() == "ok"
    return [value["id"] for value in values.values()]


def test_repeated_kills_during_writes_never_corrupt_the_store(store_url):
    url = store_url()
    open_store(url).close()
    written = 0
    for round_ in range(6 if store_url.kind == "sqlite" else 3):
        proc = writer(url, f"w{round_}", 100_000)
        for _ in range(1 + round_ % 3):  # 1 to 3 batches written, the next one under way
            proc.stdout.readline()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        written += 1 + round_ % 3
    ids = stored_ids(url)
    batches = Counter(i.rsplit("-", 1)[0] for i in ids)
    assert sum(batches.values()) >= written * 20
    if store_url_kind(url) == "sqlite":  # one transaction per batch: every batch whole
        assert set(batches.values()) == {20}
    # shared stores write each result whole, a batch result by result: a kill may leave part
    # of the batch in flight, never part of a result (checked in stored_ids)


# Shared stores write one blob per result: fewer batches keep moto's server quick.
BATCHES = {"sqlite": 150, "folder": 40, "s3": 8}


def test_two_processes_write_at_once(store_url):
    url, batches = store_url(), BATCHES[store_url.kind]
    procs = [writer(url, name, batches) for name in ("a", "b")]
    assert [finished(p) for p in procs] == ["done", "done"]
    assert len(stored_ids(url)) == 2 * batches * 20


def test_processes_opening_one_new_store_at_once_all_get_it(store_url):
    # Opening switches a new SQLite file to WAL; SQLite refuses that switch at once (no busy
    # wait) while another process converts the file. Before the retry, about 1 opener in 30
    # died here. A shared store's openers race to write its format.json.
    trials, batches = (20, 20) if store_url.kind == "sqlite" else (2, 2)
    for trial in range(trials):
        url = store_url(f"store{trial}")
        procs = [writer(url, name, batches) for name in "abcd"]
        assert [finished(p) for p in procs] == ["done"] * 4
        assert len(stored_ids(url)) == 4 * batches * 20


def captions_and_reuse(rows: list[dict]) -> list[tuple[str, list[bool]]]:
    return [(r["text"], [v["from_store"] for v in r[Fields.meta][META_KEY]["videos"]])
            for r in rows]


def test_the_op_reuses_stored_captions_and_never_stale_ones(store_url, qwen3, tiny_models,
                                                            videos):
    store = store_url()
    samples = [{"text": f"{V} {E}", "videos": [v]} for v in videos[:3]]
    samples.append({"text": f"{V} a {E}{V} b {E}", "videos": videos[3:5]})

    def run(model=qwen3, **params):
        op = make_op(model, keep_original_sample=False, result_store=store, **params)
        return captions_and_reuse(run_op(op, samples))

    first = run()
    assert all(not any(flags) for _, flags in first)
    again = run()
    assert [t for t, _ in again] == [t for t, _ in first]
    assert all(all(flags) for _, flags in again)
    for changed in (run(prompt="Say what happens."), run(caption_num=2),
                    run(model=tiny_models["qwen2_5_vl"]), run(max_frames=2)):
        assert all(not any(flags) for _, flags in changed)
    assert stored_count(store) == 5 * 5  # 5 configurations x 5 videos, each stored once


def test_a_reused_record_equals_the_generated_one(store_url, qwen3, videos):
    # Everything a video's record says (its frames record, the gate's flags, ...) comes back
    # from the store: only from_store differs, and batching (how this run's generate call was
    # batched: empty for a reused caption, as the README says).
    store = store_url()
    samples = [{"text": f"{V} {E}", "videos": [v]} for v in videos[:2]]

    def video_records() -> list[dict]:
        op = make_op(qwen3, keep_original_sample=False, result_store=store)
        records = [v for r in run_op(op, samples) for v in r[Fields.meta][META_KEY]["videos"]]
        return [{k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in record.items()}
                for record in records]

    first, again = video_records(), video_records()
    assert [r.pop("from_store") for r in first] == [False, False]
    assert [r.pop("from_store") for r in again] == [True, True]
    assert [r.pop("batching") for r in first] != ["", ""]
    assert [r.pop("batching") for r in again] == ["", ""]
    assert first[0]["frames"]["count"] > 0
    assert again == first


DJ_PROCESS = str(Path(sys.executable).with_name("dj-process"))
RESUME_VIDEOS = 42


def recipe(tmp_path: Path, name: str, dataset: Path, model: str, store: str) -> Path:
    import yaml

    from tests.conftest import FAST_FRAMES

    config = tmp_path / f"{name}.yaml"
    config.write_text(yaml.safe_dump({
        "project_name": name, "dataset_path": str(dataset), "np": 1,
        "export_path": str(tmp_path / name / "out.jsonl"), "work_dir": str(tmp_path / name),
        "keep_stats_in_res_ds": True,
        "process": [{"vlm_video_captioning_mapper": {
            "hf_model": model, "keep_original_sample": False, "seed": 0, **FAST_FRAMES,
            "generation_batch_size": 1, "result_store": store,
            "sampling_params": {"max_new_tokens": 24, "min_new_tokens": 24}}}]}))
    return config


def dj_process(config: Path, log: Path, **popen) -> subprocess.Popen:
    """``dj-process`` on ``config`` in the background, its output going to ``log`` (a pipe
    nobody reads while waiting would fill up and stop it)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("w") as out:
        return subprocess.Popen([DJ_PROCESS, "--config", str(config)], env=env, text=True,
                                stdout=out, stderr=subprocess.STDOUT, **popen)


def finish(proc: subprocess.Popen, log: Path) -> str:
    proc.wait(timeout=900)
    return log.read_text()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, qwen3) -> tuple[Path, list[dict]]:
    """The resume test's dataset and the export of one uninterrupted run over it (shared by
    the store kinds)."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    (folder / "clips").mkdir()
    clips = [make_clip(folder / "clips" / f"c{i:02d}.mp4", 1.0 + (i % 4) * 0.5, 8,
                       64 + 16 * (i % 3), 48) for i in range(RESUME_VIDEOS)]
    dataset = folder / "videos.jsonl"
    dataset.write_text("".join(json.dumps({"text": f"{V} {E}", "videos": [str(c)]}) + "\n"
                               for c in clips))
    whole = recipe(folder, "whole", dataset, qwen3, str(folder / "whole" / "store.sqlite"))
    out = finish(dj_process(whole, folder / "whole.log"), folder / "whole.log")
    assert "42 rows captioned, 0 failed" in out, out[-3000:]
    return dataset, comparable_rows(read_rows(folder / "whole" / "out.jsonl"))


@pytest.mark.slow
def test_a_killed_dj_process_resumes_from_the_store(tmp_path, qwen3, store_url, uninterrupted):
    """SIGKILL after at least 10 captions are stored, then the same command again: the export
    equals an uninterrupted run's, and only the videos not stored are generated again."""
    dataset, whole = uninterrupted
    store = store_url()
    resumed = recipe(tmp_path, "resumed", dataset, qwen3, store)
    proc = dj_process(resumed, tmp_path / "killed.log", start_new_session=True)
    deadline = time.monotonic() + 600
    while stored_count(store) < 10 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # dj-process and its decoding processes
    proc.wait()
    stored = stored_count(store)
    assert 10 <= stored < RESUME_VIDEOS, stored
    assert len(stored_values(store)) == stored  # every stored result whole
    if store_url.kind == "sqlite":
        with open_store(store) as opened:
            assert opened.integrity() == "ok"

    out = finish(dj_process(resumed, tmp_path / "resumed.log"), tmp_path / "resumed.log")
    generated = RESUME_VIDEOS - stored
    assert f"({stored} reused from the result store, {generated} generated)" in out, out[-3000:]
    assert comparable_rows(read_rows(tmp_path / "resumed" / "out.jsonl")) == whole
    assert stored_count(store) == RESUME_VIDEOS
    print(f"resume ({store_url.kind}): {stored} stored before the kill, {generated} generated "
          "after it")
