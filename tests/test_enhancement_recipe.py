"""``recipes/caption_enhance.yaml`` through the real ``dj-process``: caption and enhance in one
run, on the transformers backend and on an OpenAI-compatible server (the loopback one); the
same command again resumes both ops from their shared store; ``dj-ops-caption --enhance``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from data_juicer.utils.constant import Fields

from dj_ops.captioning.records import META_KEY
from dj_ops.enhancement.length import load_target
from dj_ops.enhancement.records import ENHANCEMENT_KEY
from dj_ops.export.dj_output import read_rows
from dj_ops.ops import ENHANCEMENT_OP_NAME
from dj_ops.testing.openai_server import CompletionServer
from dj_ops.testing.recipes import load_recipe, offline_variant, write_recipe
from tests.conftest import FAST_FRAMES
from tests.enhancement_support import E, V
from tests.test_dj_process import DJ_PROCESS

pytest_plugins = ("tests.enhancement_fixtures",)  # its fixtures

ROOT = Path(__file__).resolve().parents[1]
BOUND = 16  # target tokens: gibberish of 24 new tokens needs cutting


def run_recipe(tmp_path: Path, videos: list[str], model: str, tokenizer: str,
               top_level: dict | None = None, **both) -> list[dict]:
    """The recipe offline: both ops on ``model`` (the captioner, given text only, rewrites),
    the bound counted in ``tokenizer``; ``both``: parameters of both ops."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    dataset = tmp_path / "input.jsonl"
    dataset.write_text("".join(json.dumps({"text": f"{V} {E}", "videos": [v]}) + "\n"
                               for v in videos))
    export = tmp_path / "out" / "result.jsonl"
    store = str(tmp_path / "store.sqlite")
    variant = offline_variant(
        load_recipe(ROOT / "recipes" / "caption_enhance.yaml"), model=model,
        dataset=str(dataset), export=str(export), work_dir=str(tmp_path / "work"),
        op_overrides={**FAST_FRAMES, "sampling_params": {"max_new_tokens": 8},
                      "result_store": store, **both}, top_level=top_level)
    for op in variant["process"]:
        if ENHANCEMENT_OP_NAME in op:
            op[ENHANCEMENT_OP_NAME].update(
                hf_model=model, target_tokenizer=tokenizer, max_target_tokens=BOUND,
                result_store=store, sampling_params={"max_new_tokens": 24}, **both)
    config = write_recipe(variant, tmp_path / "caption_enhance.yaml")
    proc = subprocess.run([DJ_PROCESS, "--config", str(config)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if (top_level or {}).get("executor_type", "default") == "default":  # op.run's closing line
        assert f"{ENHANCEMENT_OP_NAME} output: {len(videos)} rows: enhanced {len(videos)}" in (
            proc.stderr), proc.stderr[-3000:]
    return list(read_rows(export))


def check_rows(rows: list[dict], videos: list[str], model: str, backend: str,
               tokenizer: str) -> None:
    """Each row keeps its caption and the captioning record, and has its rewrite beside it
    with its provenance, within the bound."""
    target = load_target(tokenizer)
    assert sorted(r["videos"][0] for r in rows) == sorted(videos)
    for row in rows:
        assert row[Fields.meta][META_KEY]["status"] == "captioned"
        (caption,), (rewrite,) = row["caption"], row["caption_enhanced"]
        assert caption and rewrite
        record = row[Fields.meta][ENHANCEMENT_KEY]
        assert (record["status"], record["model"], record["backend"], record["preset"]) == (
            "enhanced", model, backend, "video_generation")
        assert (record["target_tokenizer"], record["max_target_tokens"]) == (tokenizer, BOUND)
        (entry,) = record["rewrites"]
        assert target.count(rewrite) == entry["target_tokens"] <= BOUND


def without_reuse(rows: list[dict]) -> list[dict]:
    for row in rows:
        row[Fields.meta][META_KEY].pop("worker")  # the process that captioned it
        for entry in row[Fields.meta][META_KEY]["videos"]:
            entry.pop("from_store")
            entry.pop("batching")  # how this run batched its generate call: "" when reused
        for entry in row[Fields.meta][ENHANCEMENT_KEY]["rewrites"]:
            entry.pop("from_store")
    return sorted(rows, key=lambda r: r["videos"])


def test_one_dj_process_run_captions_and_enhances_then_resumes(tmp_path, qwen3, videos,
                                                               t5_tokenizer):
    rows = run_recipe(tmp_path, videos[:3], qwen3, t5_tokenizer)
    check_rows(rows, videos[:3], qwen3, "transformers", t5_tokenizer)
    again = run_recipe(tmp_path, videos[:3], qwen3, t5_tokenizer)  # the same command
    assert all(e["from_store"] for r in again for e in r[Fields.meta][ENHANCEMENT_KEY]["rewrites"])
    assert without_reuse(again) == without_reuse(rows)


def test_one_dj_process_run_on_an_openai_server(tmp_path, qwen3, videos, t5_tokenizer):
    with CompletionServer(qwen3) as server:
        rows = run_recipe(tmp_path, videos[:2], qwen3, t5_tokenizer, backend="openai",
                          model_params={"api_base": server.url, "model_type": "qwen3_vl"})
        received = list(server.received)
    check_rows(rows, videos[:2], qwen3, "openai", t5_tokenizer)
    text_only = [p for p in received if not any(
        part.get("type") == "video_url" for m in p["messages"] if isinstance(m["content"], list)
        for part in m["content"])]
    assert len(text_only) == 2  # one rewrite request per caption, no video in it
    for payload in text_only:
        system, user = payload["messages"]
        assert system["role"] == "system" and "text-to-video" in json.dumps(system)
        assert payload["max_tokens"] == 24


# Ray 2.60 puts a node on the machine's own address unless clusters are "not enabled": this
# keeps the local cluster dj-process starts (ray_address: local) on loopback.
LOOPBACK_RAY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.mark.slow  # a local Ray cluster and two dj-process runs
def test_on_ray_the_rows_equal_the_default_executor(tmp_path, qwen3, videos, t5_tokenizer,
                                                    monkeypatch):
    for name, value in LOOPBACK_RAY.items():
        monkeypatch.setenv(name, value)
    ray = run_recipe(tmp_path / "ray", videos[:3], qwen3, t5_tokenizer, batch_size=1,
                     top_level={"executor_type": "ray", "ray_address": "local"})
    check_rows(ray, videos[:3], qwen3, "transformers", t5_tokenizer)
    assert (tmp_path / "ray" / "out" / "result.jsonl").is_dir()  # Ray writes shards
    default = run_recipe(tmp_path / "default", videos[:3], qwen3, t5_tokenizer, batch_size=1)
    assert without_reuse(ray) == without_reuse(default)


def test_the_caption_command_enhances_with_a_flag(tmp_path, qwen3, videos):
    out = tmp_path / "captions.jsonl"
    folder = tmp_path / "videos"
    folder.mkdir()
    for video in videos[:2]:
        (folder / Path(video).name).symlink_to(video)
    command = [str(Path(sys.executable).with_name("dj-ops-caption")), str(folder), "-o",
               str(out), "--model", qwen3, "--max-frames", "4", "--max-new-tokens", "8",
               "--num-proc", "1", "--enhance", "short"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "enhanced: 2 rewrites (0 reused from the store, 0 cut to the length bound), " \
           "0 failed" in proc.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(r["caption"][0] and r["caption_enhanced"][0] for r in rows)
    assert {r[Fields.meta][ENHANCEMENT_KEY]["preset"] for r in rows} == {"short"}
    assert (out.parent / f"{out.name}.store.sqlite").is_file()  # one store, shared with captions
