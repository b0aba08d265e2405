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


def run_recipe(tmp_path: Path, samples: list[dict], op_params: dict, np: int = 1) -> list[dict]:
    dataset = tmp_path / "input.jsonl"
    dataset.write_text("".join(json.dumps(s) + "\n" for s in samples))
    export = tmp_path / "out" / "result.jsonl"
    recipe = {
        "project_name": "dj_ops_test",
        "dataset_path": str(dataset),
        "export_path": str(export),
        "np": np,
        "work_dir": str(tmp_path / "work"),
        "keep_stats_in_res_ds": True,
        "process": [{"vlm_video_captioning_mapper": op_params}],
    }
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run(
        [DJ_PROCESS, "--config", str(config)], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in export.read_text().splitlines()]


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
