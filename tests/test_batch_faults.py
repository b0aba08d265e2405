"""No exception in one micro-batch costs the job: faults raised at each stage of the real
transformers backend (tiny Qwen3-VL; the fault is the only thing injected), through the op and
through ``dj-process``. A fault on one video costs that video an error record carrying the
exception's message; a fault on batches only (a processor that cannot stack videos) costs
nothing: the videos are generated again one by one, and their records say so."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from data_juicer.utils.constant import Fields

from dj_ops.backends.isolation import (
    GENERATION_ERROR,
    INPUT_ERROR,
    OUTPUT_ERROR,
    SPLIT_AFTER_ERROR,
)
from dj_ops.captioning.records import META_KEY
from dj_ops.testing.fault_injection import Fault, arm_server, armed, sitecustomize_source
from dj_ops.testing.openai_server import CompletionServer
from tests.conftest import FAST_SAMPLING, make_op, run_op
from tests.test_dj_process import DJ_PROCESS
from tests.video_families import PROMPT_KEY, VARIED_FRAMES, make_varied_clips, samples_of

KINDS = {"inputs": INPUT_ERROR, "vision": GENERATION_ERROR, "generate": GENERATION_ERROR,
         "decode": OUTPUT_ERROR}
BAD = "three_seconds"  # the clip a per-video fault hits


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, str]:
    return make_varied_clips(tmp_path_factory.mktemp("varied_clips"))


def records_by_name(rows: list[dict]) -> dict[str, dict]:
    """The op's record of each output row, by its clip's name (one row per clip)."""
    records = [row[Fields.meta][META_KEY] for row in rows]
    named = {Path(r["videos"][0]["path"]).stem: r for r in records}
    assert len(named) == len(rows)
    return named


def caption(model: str, clips: dict[str, str], faults: list[Fault], **params) -> dict[str, dict]:
    with armed(faults):
        op = make_op(model, keep_original_sample=False, generation_batch_size=4,
                     decode_workers=0, **{**VARIED_FRAMES, **params})
        rows = run_op(op, samples_of(clips))
    assert len(rows) == len(clips)  # every row accounted for
    return records_by_name(rows)


@pytest.mark.parametrize("stage", list(KINDS))
def test_a_fault_on_one_video_costs_that_video_alone(qwen3, clips, stage):
    records = caption(qwen3, clips, [Fault(stage, match=BAD)])
    bad = records.pop(BAD)
    assert bad["status"] == "error"
    video = bad["videos"][0]
    assert video["error_kind"] == KINDS[stage]
    assert video["error_message"] == f"InjectedFault: injected {stage} fault ({BAD})"
    assert {r["status"] for r in records.values()} == {"captioned"}
    # they shared the failed micro-batch, so were generated again one by one
    assert {r["videos"][0]["batching"] for r in records.values()} == {SPLIT_AFTER_ERROR}


@pytest.mark.parametrize("stage", ["inputs", "vision"])
def test_a_batch_level_fault_costs_no_video(qwen3, clips, stage):
    # plain generate: the fast path encodes each prompt alone, so inputs never batch there
    records = caption(qwen3, clips, [Fault(stage, batches_only=True)], caption_num=2,
                      fast_decoding="off")
    assert {r["status"] for r in records.values()} == {"captioned"}
    assert {r["videos"][0]["batching"] for r in records.values()} == {SPLIT_AFTER_ERROR}


def test_without_faults_nothing_is_split(qwen3, clips):
    records = caption(qwen3, clips, [])
    assert {r["status"] for r in records.values()} == {"captioned"}
    assert {r["videos"][0]["batching"] for r in records.values()} == {"any"}


def test_on_error_raise_still_stops_at_the_first_error_record(qwen3, clips):
    with pytest.raises(Exception, match="injected generate fault"):
        caption(qwen3, clips, [Fault("generate", match=BAD)], on_error="raise")


def test_dj_process_finishes_with_every_row_when_a_video_fails(tmp_path, qwen3, clips):
    """The real ``dj-process`` command, its backend armed at start-up (``sitecustomize``):
    the job exits 0 and the export holds every row, the failed one with its record."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(sitecustomize_source([Fault("vision", match=BAD)]))
    dataset = tmp_path / "input.jsonl"
    dataset.write_text("".join(json.dumps(s) + "\n" for s in samples_of(clips)))
    export = tmp_path / "out" / "result.jsonl"
    recipe = tmp_path / "recipe.yaml"
    op = {"hf_model": qwen3, "caption_num": 2, "keep_original_sample": False,
          "generation_batch_size": 4, "sampling_params": FAST_SAMPLING, "seed": 0,
          **VARIED_FRAMES}
    recipe.write_text(json.dumps({  # JSON is YAML
        "project_name": "faults", "dataset_path": str(dataset), "export_path": str(export),
        "np": 1, "work_dir": str(tmp_path / "work"), "keep_stats_in_res_ds": True,
        "process": [{"vlm_video_captioning_mapper": op}]}))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hooks), root])}
    proc = subprocess.run([DJ_PROCESS, "--config", str(recipe)], capture_output=True,
                          text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in export.read_text().splitlines()]
    records = records_by_name(rows)
    assert sorted(records) == sorted(clips)
    video = records.pop(BAD)["videos"][0]
    assert (video["error_kind"], video["error_message"]) == (
        GENERATION_ERROR, f"InjectedFault: injected vision fault ({BAD})")
    assert {r["status"] for r in records.values()} == {"captioned"}


# ---- the openai backend against the loopback server (its own transformers backend) ----

@pytest.fixture(scope="module")
def server(qwen3):
    with CompletionServer(qwen3) as running:
        yield running


def caption_through(server, qwen3, clips, faults, **params):
    server_params = {"api_base": server.url, "backoff_s": 0.01, "max_backoff_s": 0.05}
    return caption(qwen3, clips, faults, backend="openai", prompt_key=PROMPT_KEY,
                   model_params=server_params, **params)


@pytest.mark.parametrize("stage, kind", [("inputs", INPUT_ERROR), ("decode", OUTPUT_ERROR)])
def test_openai_client_faults_cost_their_request_alone(qwen3, clips, server, stage, kind):
    records = caption_through(server, qwen3, clips, [Fault(stage, match=BAD)], caption_num=2)
    video = records.pop(BAD)["videos"][0]
    assert (video["error_kind"], video["error_message"]) == (
        kind, f"InjectedFault: injected {stage} fault ({BAD})")
    assert {r["status"] for r in records.values()} == {"captioned"}


@pytest.mark.parametrize("stage", ["vision", "generate"])
def test_openai_server_side_faults_cost_their_request_alone(qwen3, clips, server, stage):
    """The server's model fails on one video: the server isolates it (its backend is the
    transformers one) and answers that request with an error, which becomes its record."""
    armed_server = arm_server(server, [Fault(stage, match=BAD)])
    try:
        records = caption_through(server, qwen3, clips, [])
    finally:
        armed_server.disarm()
    video = records.pop(BAD)["videos"][0]
    assert video["error_kind"] == "http_error"
    assert f"generation_error: InjectedFault: injected {stage} fault ({BAD})" in (
        video["error_message"])
    assert {r["status"] for r in records.values()} == {"captioned"}
