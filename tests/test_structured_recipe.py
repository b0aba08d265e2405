"""recipes/caption_structured.yaml through real ``dj-process`` on the tiny model: every row holds
a schema-valid document, its renderings within their word budgets, the long one after the video
token."""

from __future__ import annotations

import pytest

from dj_ops.captioning.structured import DEFAULT_SCHEMA
from dj_ops.testing.recipes import load_recipe
from tests.test_recipes import ROOT, clips, run_offline
from tests.test_structured_op import check_rows

pytest.importorskip("llguidance", reason="constrained decoding needs the structured extra")


def test_caption_structured_recipe_offline(tmp_path, qwen3):
    op = load_recipe(ROOT / "recipes/caption_structured.yaml")["process"][0]
    params = op["vlm_video_captioning_mapper"]
    videos = clips(tmp_path, [2.0, 3.0])
    samples = [{"text": "<__dj__video>", "videos": [v]} for v in videos]
    rows = run_offline("caption_structured.yaml", tmp_path, qwen3, samples,
                       op_overrides={"sampling_params": params["sampling_params"]})
    assert len(rows) == 2
    assert check_rows(rows, DEFAULT_SCHEMA, params["caption_lengths"]) == 2
