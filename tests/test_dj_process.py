"""The op found through the entry point and run by the real ``dj-process`` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from data_juicer.utils.constant import Fields
from data_juicer.utils.mm_utils import SpecialTokens

from dj_ops.captioning.records import META_KEY
from tests.conftest import FAST_FRAMES, FAST_SAMPLING

V, E = SpecialTokens.video, SpecialTokens.eoc
DJ_PROCESS = str(Path(sys.executable).with_name("dj-process"))


def test_plain_data_juicer_import_registers_the_op():
    code = (
        "import data_juicer.ops as ops; from data_juicer.ops.base_op import OPERATORS; "
        "print(OPERATORS.modules['vlm_video_captioning_mapper'].__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "dj_ops.ops.vlm_video_captioning_mapper"


def run_dj_process(tmp_path: Path, samples: list[dict], op_params: dict, np: int = 1,
                   keep_stats: bool = True) -> tuple[subprocess.CompletedProcess, Path]:
    """``dj-process`` on a recipe holding the op alone: the finished process and the export."""
    dataset = tmp_path / "input.jsonl"
    dataset.write_text("".join(json.dumps(s) + "\n" for s in samples))
    export = tmp_path / "out" / "result.jsonl"
    recipe = {
        "project_name": "dj_ops_test",
        "dataset_path": str(dataset),
        "export_path": str(export),
        "np": np,
        "work_dir": str(tmp_path / "work"),
        "keep_stats_in_res_ds": keep_stats,
        "process": [{"vlm_video_captioning_mapper": op_params}],
    }
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run(
        [DJ_PROCESS, "--config", str(config)], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, export


def run_recipe(tmp_path: Path, samples: list[dict], op_params: dict, np: int = 1) -> list[dict]:
    _, export = run_dj_process(tmp_path, samples, op_params, np)
    return [json.loads(line) for line in export.read_text().splitlines()]


@pytest.mark.parametrize("keep_stats", [False, True])
def test_where_the_records_go_is_said_loudly(tmp_path, qwen3, videos, keep_stats):
    """Without keep_stats_in_res_ds, Data-Juicer's exporter leaves the error records out of the
    export: the op warns before the run and again with the failed rows' count and where the
    records are; the end line names the export either way."""
    samples = [{"text": f"{V} {E}", "videos": [videos[0]]},
               {"text": f"{V} {E}", "videos": [str(tmp_path / "missing.mp4")]}]
    params = {"hf_model": qwen3, "keep_original_sample": False, **FAST_FRAMES,
              "sampling_params": FAST_SAMPLING}
    proc, export = run_dj_process(tmp_path, samples, params, keep_stats=keep_stats)
    logs = proc.stdout + proc.stderr
    stats = tmp_path / "out" / "result_stats.jsonl"
    assert f"1 rows captioned, 1 failed; output: {export}" in logs
    warned = "keep_stats_in_res_ds is false" in logs
    assert warned is not keep_stats
    if keep_stats:
        assert "(records in it)" in logs
    else:
        assert f"records in {stats}" in logs and "set `keep_stats_in_res_ds: true`" in logs
        rows = [json.loads(line) for line in export.read_text().splitlines()]
        assert all(Fields.meta not in r for r in rows)  # what the warning is about
        records = [json.loads(line)[Fields.meta][META_KEY] for line in
                   stats.read_text().splitlines()]
        assert sorted(r["status"] for r in records) == ["captioned", "error"]


@pytest.mark.parametrize(
    "mode, keep, per_original",
    [("random_any", True, 2), ("all", False, 2), ("similar_one_simhash", False, 1)],
)
def test_dj_process_runs_a_recipe(tmp_path, qwen3, videos, mode, keep, per_original):
    samples = [{"text": f"{V} clip {i} {E}", "videos": [v]} for i, v in enumerate(videos)]
    samples.append({"text": f"{V}{V} pair {E}", "videos": videos[:2]})
    params = {
        "hf_model": qwen3,
        "caption_num": 2,
        "keep_candidate_mode": mode,
        "keep_original_sample": keep,
        "seed": 0,
        **FAST_FRAMES,
        "sampling_params": FAST_SAMPLING,
    }
    rows = run_recipe(tmp_path, samples, params, np=2)
    assert len(rows) == len(samples) * per_original
    generated = [r for r in rows if (r.get(Fields.meta) or {}).get(META_KEY)]
    assert len(generated) == len(samples) * (per_original - int(keep))
    assert all(r[Fields.meta][META_KEY]["status"] == "captioned" for r in generated)
    assert all(r["text"].count(V) == len(r["videos"]) for r in generated)
    assert sorted(len(r["videos"]) for r in generated) == sorted(
        len(s["videos"]) for s in samples for _ in range(per_original - int(keep))
    )


def test_dj_process_rejects_an_invalid_parameter(tmp_path, qwen3, videos):
    samples = [{"text": f"{V} {E}", "videos": videos[:1]}]
    with pytest.raises(AssertionError, match="greater than 0"):
        run_recipe(tmp_path, samples, {"hf_model": qwen3, "caption_num": 0})


def test_dj_process_fails_loudly_when_the_model_cannot_load(tmp_path, qwen3, videos):
    # Data-Juicer's skip_op_error would drop the batch and exit 0; this op turns it off.
    broken = tmp_path / "broken_model"
    broken.mkdir()
    (broken / "config.json").write_text((Path(qwen3) / "config.json").read_text())
    samples = [{"text": f"{V} {E}", "videos": videos[:1]}]
    with pytest.raises(AssertionError, match="Error|error"):
        run_recipe(tmp_path, samples, {"hf_model": str(broken)})


def test_two_op_processes_share_one_result_store(tmp_path, qwen3, videos):
    """np 2: both worker processes write the same store; the same recipe run again reuses
    every caption (no row generated twice) and yields the same texts."""
    samples = [{"text": f"{V} clip {i} {E}", "videos": [v]} for i, v in enumerate(videos)]
    params = {"hf_model": qwen3, "keep_original_sample": False, "seed": 0, **FAST_FRAMES,
              "sampling_params": FAST_SAMPLING, "batch_size": 2,
              "result_store": str(tmp_path / "store.sqlite")}
    (tmp_path / "first").mkdir()
    (tmp_path / "again").mkdir()
    first = run_recipe(tmp_path / "first", samples, params, np=2)
    again = run_recipe(tmp_path / "again", samples, params, np=2)
    reused = [[v["from_store"] for v in r[Fields.meta][META_KEY]["videos"]] for r in again]
    assert [r["text"] for r in again] == [r["text"] for r in first]
    assert all(not v["from_store"] for r in first for v in r[Fields.meta][META_KEY]["videos"])
    assert reused == [[True]] * len(samples)
