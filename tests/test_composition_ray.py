"""The op's features on a real Ray cluster on loopback, used together: ``ray`` (CI's Ray step;
each run starts Ray actors). docs/composition.md is written from the ``composes`` markers:
a recipe of several ops carries one mark per op (each op's features, all under Ray, np 2)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from data_juicer.utils.constant import Fields

from dj_ops.captioning.records import META_KEY
from dj_ops.export.dj_output import read_rows
from dj_ops.testing.openai_server import CompletionServer
from tests.conftest import FAST_FRAMES
from tests.test_composition import (
    BUDGET,
    CUT,
    RANGE,
    TINY_SCHEMA,
    WHOLE_DOCUMENT,
    WINDOWS,
    check_budget,
    check_field,
    check_gate,
)
from tests.test_dj_process import DJ_PROCESS
from tests.test_ray import ray_address, ray_cluster  # noqa: F401 - the module's Ray cluster
from tests.test_recipes import clips

ROOT = Path(__file__).resolve().parents[1]


def run_on_ray(tmp_path: Path, address: str, samples: list[dict], ops: list[dict]) -> list[dict]:
    """``dj-process`` with ``executor_type: ray``, np 2, the ops in order; the export's rows."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    dataset = tmp_path / "input.jsonl"
    dataset.write_text("".join(json.dumps(s) + "\n" for s in samples))
    export = tmp_path / "out" / "result.jsonl"
    recipe = {"project_name": "dj_ops_composition", "dataset_path": str(dataset),
              "export_path": str(export), "work_dir": str(tmp_path / "work"),
              "executor_type": "ray", "ray_address": address, "np": 2,
              "keep_stats_in_res_ds": True,
              "process": [{"vlm_video_captioning_mapper": {**FAST_FRAMES, "seed": 0, **op}}
                          for op in ops]}
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([DJ_PROCESS, "--config", str(config)], capture_output=True, text=True,
                          env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sorted(read_rows(export), key=lambda r: r["videos"])


@pytest.mark.ray
@pytest.mark.composes("ray", "np", "transformers", "windows", "result_store", "gate",
                      "frame_budget", "caption_key", "all")
def test_windows_store_gate_and_budget_on_ray(tmp_path, qwen3, ray_address):  # noqa: F811
    long, short = clips(tmp_path, [12.0, 4.0])
    samples = [{"text": "", "videos": [long]}, {"text": "", "videos": [short]}]
    op = dict(hf_model=qwen3, caption_num=2, keep_candidate_mode="all", caption_key="caption",
              sampling_params=CUT, max_retries=1, max_visual_tokens=BUDGET, **WINDOWS,
              result_store=str(tmp_path / "store.sqlite"))
    first = run_on_ray(tmp_path / "first", ray_address, samples, [op])
    assert len(first) == 2
    for row in first:
        record = row[Fields.meta][META_KEY]
        assert record["status"] == "captioned"
        check_field(row, "all", 2)
        video = record["videos"][0]
        check_gate(video, retries=1)
        for window in video["windows"]:
            check_gate(window, retries=1, text=window["caption"])
            check_budget(window["frames"])
    assert [len(r["caption_windows"][0]) for r in first] == [3, 1]
    again = run_on_ray(tmp_path / "again", ray_address, samples, [op])
    assert all(v["from_store"] for r in again for v in r[Fields.meta][META_KEY]["videos"])
    assert [r["caption_windows"] for r in again] == [r["caption_windows"] for r in first]


@pytest.mark.ray
@pytest.mark.composes("ray", "np", "transformers", "json", "video_range", "similar_one_simhash")
@pytest.mark.composes("ray", "np", "transformers", "json", "video_range", "consensus")
def test_json_range_and_modes_on_ray(tmp_path, qwen3, ray_address):  # noqa: F811
    """One recipe, two ops (each writes its own field) differing in their keep mode only:
    Data-Juicer 1.6.1 gives a later op of the same name every parameter an earlier one set, and
    merges their dicts (docs/findings.md)."""
    videos = clips(tmp_path, [4.0, 4.0, 4.0])
    samples = [{"text": "", "videos": [v]} for v in videos]
    structured = dict(hf_model=qwen3, caption_num=2, caption_format="json",
                      json_schema=TINY_SCHEMA, sampling_params=WHOLE_DOCUMENT, **RANGE)
    rows = run_on_ray(tmp_path, ray_address, samples, [
        {**structured, "keep_candidate_mode": "similar_one_simhash", "caption_key": "simhash"},
        {**structured, "keep_candidate_mode": "consensus", "caption_key": "consensus"}])
    assert len(rows) == len(samples)
    for row in rows:
        for field in ("simhash", "consensus"):  # each op's own field: a rendered document
            assert len(row[field]) == 1 and row[field][0]
            assert all(row[f"{field}_lengths"][0].values())
        record = row[Fields.meta][META_KEY]  # the last op's
        assert record["status"] == "captioned", record["videos"]
        assert record["generation"]["caption_format"] == "json"
        (video,) = record["videos"]
        assert all(RANGE["video_start"] <= t <= RANGE["video_end"] for t in video["timestamps"])


@pytest.mark.ray
@pytest.mark.composes("ray", "np", "openai", "random_any", "gate", "caption_key", "video_range")
def test_a_server_on_ray(tmp_path, qwen3, ray_address):  # noqa: F811
    videos = clips(tmp_path, [4.0, 4.0, 4.0])
    samples = [{"text": "", "videos": [v]} for v in videos]
    with CompletionServer(qwen3) as server:
        rows = run_on_ray(tmp_path, ray_address, samples, [dict(
            hf_model=qwen3, backend="openai",  # the server answers one request at a time
            model_params={"api_base": server.url, "timeout_s": 900}, caption_num=2,
            keep_candidate_mode="random_any", caption_key="caption", sampling_params=CUT,
            max_retries=1, **RANGE)])
    assert len(rows) == len(samples)
    for row in rows:
        record = row[Fields.meta][META_KEY]
        assert record["status"] == "captioned" and record["backend"] == "openai"
        (video,) = record["videos"]
        check_gate(video, retries=1, text=row["caption"][0])
        assert all(RANGE["video_start"] <= t <= RANGE["video_end"] for t in video["timestamps"])
