"""Offline variants of the recipes in ``recipes/``: the same pipeline on a local model and data.

A recipe names a real model (``Qwen/Qwen3-VL-8B-Instruct``) and paths of its own. Its offline
variant keeps every op and setting but points the captioning op at a local (tiny) model, reads
another dataset and writes elsewhere; ``op_overrides`` can lower frame and token counts so the
variant runs on CPU in seconds. Tests run the variants. (By hand, Data-Juicer's command-line
overrides do the same: ``dj-process --config RECIPE --vlm_video_captioning_mapper.hf_model
outputs/demo/model``.)
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from dj_ops.ops.vlm_video_captioning_mapper import OP_NAME


def load_recipe(path: str | Path) -> dict:
    """A recipe file as a dict."""
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def captioning_params(recipe: dict) -> list[dict]:
    """The parameter dicts of every captioning op of ``recipe`` (edited in place by callers)."""
    return [params for op in recipe.get("process", []) for name, params in op.items()
            if name == OP_NAME]


def offline_variant(recipe: dict, *, model: str, dataset: str, export: str,
                    work_dir: str | None = None, op_overrides: dict | None = None,
                    top_level: dict | None = None) -> dict:
    """A copy of ``recipe`` captioning with ``model``, reading ``dataset``, writing ``export``.

    :param op_overrides: merged into every captioning op's parameters.
    :param top_level: merged into the recipe's top-level settings (e.g. ``ray_address``).
    :raises ValueError: when the recipe has no captioning op.
    """
    variant = copy.deepcopy(recipe)
    ops = captioning_params(variant)
    if not ops:
        raise ValueError(f"the recipe has no {OP_NAME} step")
    for params in ops:
        params.update({"hf_model": model, **(op_overrides or {})})
    variant.update({"dataset_path": dataset, "export_path": export, **(top_level or {})})
    if work_dir:
        variant["work_dir"] = work_dir
    return variant


def write_recipe(recipe: dict, path: str | Path) -> Path:
    """Write ``recipe`` as yaml to ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path
