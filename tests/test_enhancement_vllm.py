"""Caption enhancement on vLLM's CPU engine and server (``pytest -m vllm`` in ``.venv-vllm``):
the two-op recipe in one ``dj-process`` run on the in-process engine (a text-only causal LM
rewriting, fed continuously), and on vLLM's OpenAI-compatible server (the captioning VLM
rewriting, text only)."""

from __future__ import annotations

import json
import os

import pytest

vllm = pytest.importorskip("vllm")

from data_juicer.utils.constant import Fields  # noqa: E402

from dj_ops.captioning.records import META_KEY  # noqa: E402
from dj_ops.enhancement.length import load_target  # noqa: E402
from dj_ops.enhancement.records import ENHANCEMENT_KEY  # noqa: E402
from dj_ops.testing.clips import make_clip  # noqa: E402
from dj_ops.testing.tiny_models import VLLM_HEAD_DIM, build_tiny_model  # noqa: E402
from dj_ops.testing.tiny_text import build_t5_like_tokenizer, build_tiny_text_model  # noqa: E402
from dj_ops.testing.vllm_server import VLLMServer  # noqa: E402
from tests.test_enhancement_store import dj_process  # noqa: E402
from tests.vllm_support import ENGINE, FRAMES  # noqa: E402

pytestmark = pytest.mark.vllm
BOUND = 16


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("hd32")
    return {"vl": build_tiny_model("qwen3_vl", root / "qwen3_vl", head_dim=VLLM_HEAD_DIM),
            "text": build_tiny_text_model(root / "qwen3_text", head_dim=VLLM_HEAD_DIM),
            "t5": build_t5_like_tokenizer(root / "t5_like")}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("clips")
    return [str(make_clip(folder / f"clip{i}.mp4", seconds=2.0 + i, width=96, height=64))
            for i in range(3)]


def run_two_ops(tmp_path, clips, captioning: dict, enhancement: dict) -> list[dict]:
    """``dj-process`` on the two ops (captions into ``caption``, rewrites beside them)."""
    import yaml

    dataset = tmp_path / "videos.jsonl"
    dataset.write_text("".join(json.dumps({"text": "", "videos": [c]}) + "\n" for c in clips))
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump({
        "project_name": "enhance_vllm", "dataset_path": str(dataset), "np": 1,
        "export_path": str(tmp_path / "out.jsonl"), "work_dir": str(tmp_path / "work"),
        "keep_stats_in_res_ds": True,
        "process": [{"vlm_video_captioning_mapper": {"caption_key": "caption", **FRAMES,
                                                      "sampling_params": {"max_new_tokens": 8},
                                                      **captioning}},
                    {"caption_enhancement_mapper": {"caption_key": "caption",
                                                    "preset": "video_generation",
                                                    "max_target_tokens": BOUND,
                                                    "sampling_params": {"max_new_tokens": 32},
                                                    **enhancement}}]}))
    proc = dj_process(config, tmp_path / "run.log")
    assert proc.wait(timeout=1800) == 0, (tmp_path / "run.log").read_text()[-4000:]
    log = (tmp_path / "run.log").read_text()
    assert f"rows: enhanced {len(clips)};" in log, log[-4000:]
    return [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]


def check(rows: list[dict], backend: str, tokenizer: str) -> None:
    target = load_target(tokenizer)
    for row in rows:
        assert row[Fields.meta][META_KEY]["status"] == "captioned" and row["caption"][0]
        record = row[Fields.meta][ENHANCEMENT_KEY]
        assert (record["status"], record["backend"]) == ("enhanced", backend)
        (entry,) = record["rewrites"]
        (rewrite,) = row["caption_enhanced"]
        assert rewrite and target.count(rewrite) == entry["target_tokens"] <= BOUND
        assert entry["decoding"] == "engine"


def test_two_ops_on_the_engine_with_a_text_model(tmp_path, models, clips):
    engine = {**ENGINE, "max_model_len": 2048}
    rows = run_two_ops(
        tmp_path, clips,
        {"hf_model": models["vl"], "backend": "vllm", "model_params": engine, "seed": 0},
        {"hf_model": models["text"], "backend": "vllm", "model_params": engine, "seed": 0,
         "target_tokenizer": models["t5"]})
    check(rows, "vllm", models["t5"])
    assert {row[Fields.meta][ENHANCEMENT_KEY]["model"] for row in rows} == {models["text"]}


def test_two_ops_on_a_vllm_server(tmp_path, models, clips):
    """The server's CPU engine dies on a per-request seed once prefill is chunked (README):
    no seed."""
    log = tmp_path / "server.log"
    with VLLMServer(models["vl"], media_root=os.path.dirname(clips[0]), max_model_len=2048,
                    log_path=log) as server:
        served = {"api_base": server.url, "model_type": "qwen3_vl"}
        rows = run_two_ops(
            tmp_path, clips,
            {"hf_model": models["vl"], "backend": "openai", "model_params": served},
            {"hf_model": models["vl"], "backend": "openai", "model_params": served,
             "target_tokenizer": models["t5"]})
    check(rows, "openai", models["t5"])
