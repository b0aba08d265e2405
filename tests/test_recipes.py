"""Every recipe and preset parses with Data-Juicer's own config parser (which checks each op
parameter against the op's signature and types)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted([*ROOT.glob("recipes/*.yaml"), *ROOT.glob("configs/*.yaml")])


def localised(recipe: Path, tmp_path: Path) -> Path:
    """A copy of ``recipe`` reading and writing under ``tmp_path``."""
    config = yaml.safe_load(recipe.read_text())
    dataset = tmp_path / "videos.jsonl"
    dataset.write_text('{"text": "", "videos": []}\n')
    config.update(dataset_path=str(dataset), export_path=str(tmp_path / "out" / "result.jsonl"))
    copy = tmp_path / recipe.name
    copy.write_text(yaml.safe_dump(config))
    return copy


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.name for p in RECIPES])
def test_recipe_parses(recipe, tmp_path):
    from data_juicer.config import init_configs

    assert recipe.read_text().startswith("#"), "recipes start with a comment saying how to run"
    config = init_configs(["--config", str(localised(recipe, tmp_path))])
    [op] = config.process
    params = op["vlm_video_captioning_mapper"]
    expected = yaml.safe_load(recipe.read_text())["process"][0]["vlm_video_captioning_mapper"]
    assert {k: params[k] for k in expected} == expected
