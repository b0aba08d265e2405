"""Every recipe and preset passes Data-Juicer's config checks; recipes run offline end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from data_juicer.config import init_configs
from data_juicer.core.preflight import PipelineConfigError, pre_instantiation_check
from data_juicer.utils.constant import RAY_JOB_ENV_VAR, Fields
from data_juicer.utils.mm_utils import SpecialTokens, get_special_tokens

from dj_ops.captioning.records import META_KEY
from dj_ops.captioning.text import captions_after_video_tokens
from dj_ops.export.dj_output import read_rows
from dj_ops.testing.clips import make_clip
from dj_ops.testing.recipes import load_recipe, offline_variant, write_recipe
from tests.conftest import FAST_FRAMES
from tests.test_dj_process import DJ_PROCESS

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(ROOT.glob("recipes/*.yaml")) + sorted(ROOT.glob("configs/*.yaml"))
V, E = SpecialTokens.video, SpecialTokens.eoc
SPECIAL = list(get_special_tokens().values())
# Long enough captions for the recipes' caption-length filter (words_num_filter min_num 10).
TINY_SAMPLING = {"max_new_tokens": 32, "min_new_tokens": 32}


def check_config(path: Path) -> list[dict]:
    """Parse a recipe as ``dj-process`` does, then run its pre-instantiation checks (op names,
    parameter names, simple types) without building any op or loading any model."""
    cfg = init_configs(["--config", str(path)], load_configs_only=True)
    pre_instantiation_check(cfg.process)
    return cfg.process


@pytest.fixture
def isolated_config(tmp_path, monkeypatch):
    """init_configs creates folders under the current directory and marks Ray recipes in the
    environment: keep both inside the test."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(RAY_JOB_ENV_VAR, "0")


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recipe_passes_data_juicer_config_checks(path, isolated_config):
    process = check_config(path)
    recipe = load_recipe(path)
    assert [next(iter(op)) for op in process] == [next(iter(op)) for op in recipe["process"]]


def test_config_checks_catch_a_misspelled_parameter(tmp_path, isolated_config):
    recipe = load_recipe(ROOT / "recipes/caption.yaml")
    recipe["process"][0]["vlm_video_captioning_mapper"]["captoin_num"] = 2
    with pytest.raises(PipelineConfigError, match="captoin_num"):
        check_config(write_recipe(recipe, tmp_path / "bad.yaml"))


def run_offline(name: str, tmp_path: Path, model: str, samples: list[dict],
                op_overrides: dict | None = None, top_level: dict | None = None) -> list[dict]:
    """Run recipe ``name`` with the tiny model on ``samples`` through ``dj-process``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    dataset = tmp_path / "input.jsonl"
    dataset.write_text("".join(json.dumps(s) + "\n" for s in samples))
    export = tmp_path / "out" / "result.jsonl"
    variant = offline_variant(
        load_recipe(ROOT / "recipes" / name), model=model, dataset=str(dataset),
        export=str(export), work_dir=str(tmp_path / "work"),
        op_overrides={**FAST_FRAMES, "sampling_params": TINY_SAMPLING, **(op_overrides or {})},
        top_level={"np": 1, **(top_level or {})},
    )
    config = write_recipe(variant, tmp_path / name)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([DJ_PROCESS, "--config", str(config)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return list(read_rows(export))


def clips(folder: Path, seconds: list[float]) -> list[str]:
    return [str(make_clip(folder / f"clip{i}.mp4", s, 10, 64, 48)) for i, s in enumerate(seconds)]


def record(row: dict) -> dict:
    return row[Fields.meta][META_KEY]


def test_caption_recipe_offline(tmp_path, qwen3):
    videos = clips(tmp_path, [2.0, 3.0, 2.5])
    samples = [{"text": f"{V} {E}", "videos": [v]} for v in videos]
    samples.append({"text": f"{V}{V} {E}", "videos": videos[:2]})
    rows = run_offline("caption.yaml", tmp_path, qwen3, samples)
    assert sorted(r["videos"] for r in rows) == sorted(s["videos"] for s in samples)
    for row in rows:
        captions = captions_after_video_tokens(row["text"], V, SPECIAL)
        assert len(captions) == len(row["videos"]) and all(captions)
        assert record(row)["status"] == "captioned"


def test_caption_field_recipe_offline_in_dataflow_mm_layout(tmp_path, qwen3):
    video_key = "video"  # DataFlow-MM's field name (Data-Juicer's default is "videos")
    videos = clips(tmp_path, [2.0, 3.0])
    # Data-Juicer requires a text field in every row; it may be empty.
    samples = [{"text": "", video_key: [v]} for v in videos] + [{"text": "", video_key: videos}]
    rows = run_offline("caption_field.yaml", tmp_path, qwen3, samples,
                       top_level={"video_key": video_key})
    assert sorted(r[video_key] for r in rows) == sorted(s[video_key] for s in samples)
    for row in rows:
        assert row["text"] == ""  # untouched
        assert len(row["caption"]) == len(row[video_key]) and all(row["caption"])
        assert [v["path"] for v in record(row)["videos"]] == row[video_key]


@pytest.mark.skipif(shutil.which("ffprobe") is None,
                    reason="video_duration_filter runs ffprobe: install FFmpeg (scripts/setup.sh "
                           "does as root)")
def test_filter_caption_filter_recipe_offline(tmp_path, qwen3):
    too_short, *good = clips(tmp_path, [0.5, 2.0, 3.0, 2.5])
    samples = [{"text": f"{V} {E}", "videos": [v]} for v in [too_short, *good]]
    # Two tokens for one video: a per-sample error, kept uncaptioned, then dropped by the
    # caption-length filter.
    samples.append({"text": f"{V}{V} {E}", "videos": good[:1]})
    rows = run_offline("filter_caption_filter.yaml", tmp_path, qwen3, samples)
    assert sorted(r["videos"][0] for r in rows) == sorted(good)
    for row in rows:
        assert record(row)["status"] == "captioned"
        assert row[Fields.stats]["video_duration"][0] >= 1
        assert 10 <= row[Fields.stats]["num_words"] <= 400


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recipe_starts_with_how_to_run_it(path):
    assert path.read_text().startswith("#"), "a recipe starts with a comment saying how to run it"
