"""Rewrites in the result store: reused by caption and settings (a new caption or new settings
rewritten, nothing else), one store shared with the captioning op, and a killed ``dj-process``
run resumed from it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from data_juicer.utils.constant import Fields

from dj_ops.enhancement.records import ENHANCEMENT_KEY
from dj_ops.enhancement.store import rewrite_key
from dj_ops.export.dj_output import read_rows
from dj_ops.store import SQLiteStore
from dj_ops.testing.clips import make_clip
from tests.conftest import FAST_FRAMES, run_op
from tests.enhancement_support import E, V, captioned, make_enhancer, record_of, video_rows
from tests.test_dj_process import DJ_PROCESS
from tests.test_result_store import stored_count

pytest_plugins = ("tests.enhancement_fixtures",)  # its fixtures

ROOT = Path(__file__).resolve().parents[1]


def entries(rows: list[dict]) -> list[dict]:
    return [e for r in rows if record_of(r) for e in record_of(r)["rewrites"]]


def test_a_key_changes_with_the_caption_and_every_setting():
    base = rewrite_key({"id": "m"}, {"instruction": "a"}, "A dog runs.")
    assert base == rewrite_key({"id": "m"}, {"instruction": "a"}, "A dog runs.")
    assert len({base, rewrite_key({"id": "n"}, {"instruction": "a"}, "A dog runs."),
                rewrite_key({"id": "m"}, {"instruction": "b"}, "A dog runs."),
                rewrite_key({"id": "m"}, {"instruction": "a"}, "A dog runs!")}) == 4


def test_only_new_captions_and_new_settings_are_rewritten(tmp_path, qwen3, videos, text_model,
                                                          t5_tokenizer):
    rows = captioned(qwen3, video_rows(videos[:3]), caption_key="caption",
                     result_store=str(tmp_path / "store.sqlite"))
    params = dict(caption_key="caption", result_store=str(tmp_path / "store.sqlite"))
    first = run_op(make_enhancer(text_model, **params), rows)
    again = run_op(make_enhancer(text_model, **params), rows)
    assert [r["caption_enhanced"] for r in again] == [r["caption_enhanced"] for r in first]
    count = len(entries(first))  # three one-video rows, one two-video row
    assert [e["from_store"] for e in entries(first)] == [False] * count == [False] * 5
    assert [e["from_store"] for e in entries(again)] == [True] * count
    videos_seen = {v for r in rows for v in r["videos"]}
    captions = {c for r in rows for c in r["caption"]}  # a caption met twice: one rewrite
    with SQLiteStore(tmp_path / "store.sqlite") as store:  # one store for both ops
        assert store.count() == len(videos_seen) + len(captions) == 3 + 3
    # one caption changed: only it is rewritten
    changed = [dict(r) for r in rows]
    changed[0]["caption"] = ["A changed caption."]
    third = run_op(make_enhancer(text_model, **params), changed)
    assert [e["from_store"] for e in entries(third)] == [False] + [True] * (count - 1)
    # other settings (the instruction): everything is rewritten
    other = run_op(make_enhancer(text_model, preset="short", **params), rows)
    assert not any(e["from_store"] for e in entries(other))


def test_a_new_bound_reuses_the_stored_rewrites_and_cuts_them_again(
        tmp_path, qwen3, videos, text_model, t5_tokenizer):
    rows = captioned(qwen3, video_rows(videos[:2]), caption_key="caption")
    params = dict(caption_key="caption", result_store=str(tmp_path / "store.sqlite"),
                  prompt="Rewrite the caption.", target_tokenizer=t5_tokenizer,
                  sampling_params={"max_new_tokens": 24, "min_new_tokens": 24})
    wide = run_op(make_enhancer(text_model, max_target_tokens=60, **params), rows)
    narrow = run_op(make_enhancer(text_model, max_target_tokens=8, **params), rows)
    assert all(e["from_store"] for e in entries(narrow))
    for a, b in zip(entries(wide), entries(narrow)):
        assert b["target_tokens"] <= 8 < a["target_tokens"] and b["cut"]
    for a, b in zip(wide, narrow):
        for long, short in zip(a["caption_enhanced"], b["caption_enhanced"]):
            assert long.startswith(short)


RESUME_VIDEOS = 24


def two_op_recipe(tmp_path: Path, name: str, dataset: Path, model: str, text_model: str) -> Path:
    store = str(tmp_path / name / "store.sqlite")
    config = tmp_path / f"{name}.yaml"
    config.write_text(yaml.safe_dump({
        "project_name": name, "dataset_path": str(dataset), "np": 1,
        "export_path": str(tmp_path / name / "out.jsonl"), "work_dir": str(tmp_path / name),
        "keep_stats_in_res_ds": True,
        "process": [
            {"vlm_video_captioning_mapper": {  # sampled: distinct captions to rewrite
                "hf_model": model, "caption_key": "caption", "seed": 0, **FAST_FRAMES,
                "result_store": store, "generation_batch_size": RESUME_VIDEOS,
                "sampling_params": {"max_new_tokens": 8, "temperature": 1.0}}},
            {"caption_enhancement_mapper": {
                "hf_model": text_model, "caption_key": "caption", "seed": 0,
                "generation_batch_size": 1, "result_store": store,
                "sampling_params": {"max_new_tokens": 32, "min_new_tokens": 32}}}]}))
    return config


def dj_process(config: Path, log: Path, **popen) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen([DJ_PROCESS, "--config", str(config)], text=True, stdout=out,
                                stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, **popen)


def without_reuse(path: Path) -> list[dict]:
    rows = list(read_rows(path))
    for row in rows:
        row[Fields.meta]["vlm_video_captioning"].pop("worker")  # the process that captioned it
        for entry in row[Fields.meta]["vlm_video_captioning"]["videos"]:
            entry.pop("from_store")
            entry.pop("batching")  # how this run batched its generate call: "" when reused
        for entry in row[Fields.meta][ENHANCEMENT_KEY]["rewrites"]:
            entry.pop("from_store")
    return rows


@pytest.mark.slow
def test_a_killed_enhancement_resumes_from_the_store(tmp_path, qwen3, text_model):
    """SIGKILL once the captions and at least 3 rewrites are stored (the store is shared by the
    two ops), then the same command: the captions and the stored rewrites are reused, only the
    others generated, and the export equals an uninterrupted run's."""
    (tmp_path / "clips").mkdir()
    clips = [make_clip(tmp_path / "clips" / f"c{i:02d}.mp4", 1.0 + (i % 3) * 0.5, 8,
                       64 + 16 * (i % 2), 48) for i in range(RESUME_VIDEOS)]
    dataset = tmp_path / "videos.jsonl"
    dataset.write_text("".join(json.dumps({"text": f"{V} {E}", "videos": [str(c)]}) + "\n"
                               for c in clips))
    whole = two_op_recipe(tmp_path, "whole", dataset, qwen3, text_model)
    proc = dj_process(whole, tmp_path / "whole.log")
    assert proc.wait(timeout=1800) == 0, (tmp_path / "whole.log").read_text()[-3000:]

    resumed = two_op_recipe(tmp_path, "resumed", dataset, qwen3, text_model)
    store = tmp_path / "resumed" / "store.sqlite"
    proc = dj_process(resumed, tmp_path / "killed.log", start_new_session=True)
    deadline = time.monotonic() + 1200
    while (stored_count(store) < RESUME_VIDEOS + 3 and proc.poll() is None
           and time.monotonic() < deadline):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    distinct = {r["caption"][0] for r in read_rows(tmp_path / "whole" / "out.jsonl")}
    assert len(distinct) >= RESUME_VIDEOS // 2  # one rewrite per distinct caption
    rewrites_stored = stored_count(store) - RESUME_VIDEOS
    assert 3 <= rewrites_stored < len(distinct), rewrites_stored

    proc = dj_process(resumed, tmp_path / "resumed.log")
    assert proc.wait(timeout=1800) == 0
    log = (tmp_path / "resumed.log").read_text()
    assert f"({RESUME_VIDEOS} reused from the result store, 0 generated)" in log, log[-3000:]
    rows = list(read_rows(tmp_path / "resumed" / "out.jsonl"))
    generated = {r["caption"][0] for r in rows
                 if not r[Fields.meta][ENHANCEMENT_KEY]["rewrites"][0]["from_store"]}
    assert len(generated) == len(distinct) - rewrites_stored  # only what was not stored
    assert without_reuse(tmp_path / "resumed" / "out.jsonl") == without_reuse(
        tmp_path / "whole" / "out.jsonl")
    assert stored_count(store) == RESUME_VIDEOS + len(distinct)
    print(f"resume: {rewrites_stored} of {len(distinct)} rewrites stored before the kill")
