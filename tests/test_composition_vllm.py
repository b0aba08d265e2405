"""The op's features on vLLM's in-process CPU engine, used together (``pytest -m vllm`` in
``.venv-vllm``; docs/composition.md is written from the ``composes`` markers). One engine is
built for the keep modes (a keep mode changes nothing the engine sees)."""

from __future__ import annotations

import json

import pytest

vllm = pytest.importorskip("vllm")

from data_juicer.utils.constant import Fields  # noqa: E402

from dj_ops.captioning.records import META_KEY  # noqa: E402
from dj_ops.testing.clips import make_clip  # noqa: E402
from dj_ops.testing.tiny_models import VLLM_HEAD_DIM, build_tiny_model  # noqa: E402
from tests.conftest import make_op, run_op  # noqa: E402
from tests.test_composition import CUT, check_field, check_gate  # noqa: E402
from tests.test_dj_process import run_dj_process  # noqa: E402
from tests.test_ray import ray_address, ray_cluster  # noqa: E402, F401 - the module's Ray cluster
from tests.vllm_support import ENGINE, FRAMES  # noqa: E402

pytestmark = pytest.mark.vllm
MODES = ("random_any", "similar_one_simhash", "all", "consensus")
RANGE = {"video_start": 0.5, "video_end": 3.5}  # 2 fps: 6 frames of 64x96 (2x3 patches of 32)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return build_tiny_model("qwen3_vl", tmp_path_factory.mktemp("hd32") / "qwen3_vl",
                            head_dim=VLLM_HEAD_DIM)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("clips")
    return [str(make_clip(folder / f"c{i}.mp4", seconds=4.0, fps=10, width=96, height=64))
            for i in range(3)]


def base_params(tmp_path, budget: int | None = None) -> dict:
    return dict(backend="vllm", model_params=ENGINE, **FRAMES, fps=2.0, caption_num=2,
                caption_key="caption", sampling_params=CUT, max_retries=1, **RANGE,
                result_store=str(tmp_path / "store.sqlite"),
                **({} if budget is None else {"max_visual_tokens": budget}))


@pytest.fixture(scope="module")
def shared(model, tmp_path_factory):
    """One engine for every keep mode, and the budget that fits 2 of a clip's 3 frame groups
    (each group's vision tokens and its timestamp text, counted by the engine's tokenizer)."""
    folder = tmp_path_factory.mktemp("probe")
    backend = make_op(model, **base_params(folder)).model_key("cpu")
    budget = 2 * (6 + backend.frame_text_tokens())
    yield backend, budget
    backend.close()


@pytest.mark.composes("vllm", *MODES, "caption_key", "gate", "frame_budget", "video_range",
                      "result_store")
@pytest.mark.parametrize("mode", MODES)
def test_vllm_with_modes_field_gate_budget_range_and_store(model, clips, shared, tmp_path,
                                                           mode):
    backend, budget = shared
    params = {**base_params(tmp_path, budget), "keep_candidate_mode": mode}
    samples = [{"text": "", "videos": clips[:1]}, {"text": "", "videos": clips[1:]}]
    runs = []
    for _ in range(2):  # the second run reuses every video from the store
        op = make_op(model, **params)
        op.model_key = lambda device: backend  # the module's engine (closed by the fixture)
        runs.append(run_op(op, samples))
    first, again = runs
    for row in first:
        record = row[Fields.meta][META_KEY]
        assert record["status"] == "captioned" and record["backend"] == "vllm"
        check_field(row, mode, 2)
        for video in record["videos"]:
            check_gate(video, retries=1)
            assert video["frames"]["max_visual_tokens"] == budget
            assert 0 < video["frames"]["visual_tokens"] <= budget
            assert (video["frames"]["count"], video["frames"]["reduced"]) == (4, "frames")
            assert all(RANGE["video_start"] <= t <= RANGE["video_end"]
                       for t in video["timestamps"])
    assert [row["caption"] for row in again] == [row["caption"] for row in first]
    assert all(v["from_store"] for row in again for v in row[Fields.meta][META_KEY]["videos"])


@pytest.mark.composes("vllm", "np", "caption_key", "result_store")
def test_np_2_runs_the_engine_in_one_worker_process(model, clips, tmp_path):
    """vLLM's engine takes every GPU it is given: with np 2 the op runs in one process (said in
    the log), and every row is captioned."""
    samples = [{"text": "", "videos": [clip]} for clip in clips]
    params = {**base_params(tmp_path), "hf_model": model}
    proc, export = run_dj_process(tmp_path, samples, params, np=2)
    rows = [json.loads(line) for line in export.read_text().splitlines()]
    assert len(rows) == len(samples)
    assert all(r[Fields.meta][META_KEY]["status"] == "captioned" for r in rows)
    assert "runs in one worker process (num_proc 1)" in proc.stdout + proc.stderr


@pytest.mark.slow  # a Ray cluster and an engine in one of its actors
@pytest.mark.composes("vllm", "ray", "caption_key")
def test_the_engine_in_a_ray_actor(model, clips, tmp_path, ray_address):  # noqa: F811
    from tests.test_composition_ray import run_on_ray

    samples = [{"text": "", "videos": [clip]} for clip in clips]
    rows = run_on_ray(tmp_path, ray_address, samples, [dict(
        hf_model=model, backend="vllm", model_params=ENGINE, **FRAMES, caption_key="caption",
        sampling_params={"max_new_tokens": 8})])
    assert len(rows) == len(samples)
    for row in rows:
        record = row[Fields.meta][META_KEY]
        assert record["status"] == "captioned" and record["backend"] == "vllm"
        assert row["caption"][0]
