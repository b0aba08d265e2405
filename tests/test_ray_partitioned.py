"""Data-Juicer's resumable executor (``executor_type: ray_partitioned``) on a real loopback Ray
cluster: the op runs in every partition, each partition is checkpointed after the op, and a job
killed with SIGKILL resumes with ``--resume JOB_ID`` without captioning finished partitions
again (their rows come from Data-Juicer's Parquet checkpoints; the partition in flight is
served by the op's result store)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from data_juicer.config import init_configs
from data_juicer.utils.ckpt_utils import CheckpointStrategy, RayCheckpointManager
from data_juicer.utils.constant import Fields
from data_juicer.utils.mm_utils import SpecialTokens, get_special_tokens

from dj_ops.captioning.records import META_KEY
from dj_ops.captioning.text import captions_after_video_tokens
from dj_ops.export.dj_output import read_rows
from dj_ops.store import SQLiteStore
from dj_ops.testing.ray_cluster import RAY_ENV
from dj_ops.testing.recipes import load_recipe, offline_variant, write_recipe
from tests.conftest import FAST_FRAMES
from tests.store_support import stored_count
from tests.test_ray import ray_address, ray_cluster  # noqa: F401  (the loopback cluster)
from tests.test_recipes import clips, isolated_config  # noqa: F401  (fixture)
from tests.test_result_store import DJ_PROCESS

ROOT = Path(__file__).resolve().parents[1]
V, E = SpecialTokens.video, SpecialTokens.eoc
ROWS, PARTITIONS = 12, 3
RUN_TIMEOUT_S = 600
SLOWER_SAMPLING = {"max_new_tokens": 48, "min_new_tokens": 48}


def partitioned_recipe(tmp_path: Path, model: str, ray: str) -> Path:
    """``recipes/caption_ray_partitioned.yaml`` on ``ROWS`` generated clips and the tiny model,
    ``PARTITIONS`` partitions captioned one after the other (so that a kill lands between
    them), its result store in ``tmp_path``."""
    (tmp_path / "clips").mkdir()
    videos = clips(tmp_path / "clips", [1.0, 1.5] * (ROWS // 2))
    dataset = tmp_path / "input.jsonl"
    dataset.write_text("".join(json.dumps({"text": f"{V} {E}", "videos": [v]}) + "\n"
                               for v in videos))
    variant = offline_variant(
        load_recipe(ROOT / "recipes/caption_ray_partitioned.yaml"), model=model,
        dataset=str(dataset), export=str(tmp_path / "out" / "result.jsonl"),
        work_dir=str(tmp_path / "jobs"),
        # 1-row batches, 48 tokens each: a partition takes seconds, each row stored on its own.
        op_overrides={**FAST_FRAMES, "sampling_params": SLOWER_SAMPLING, "batch_size": 1,
                      "generation_batch_size": 1, "result_store": str(tmp_path / "store.sqlite")},
        top_level={"ray_address": ray, "np": 1},
    )
    # gpu_preflight_enabled: false: Data-Juicer's GPU preflight profiles every op whose
    # accelerator is cuda (this op's, which falls back to CPU without CUDA) on a Ray task asking
    # for {'GPU': 1.0}; on a cluster without GPUs that task never starts and dj-process waits
    # forever (docs/resume.md).
    variant["partition"] = {"mode": "manual", "num_of_partitions": PARTITIONS,
                            "max_concurrent_partitions": 1, "gpu_preflight_enabled": False}
    return write_recipe(variant, tmp_path / "recipe.yaml")


def start(config: Path, log: Path, ray: str, *args: str) -> subprocess.Popen:
    """``dj-process`` in its own process group (so that SIGKILL reaches all of it), its output
    in ``log``. RAY_ADDRESS: the ray_partitioned executor of Data-Juicer 1.6.1 never reads
    ``ray_address``; its first Ray call starts Ray with ``ray.init()``, which connects to
    RAY_ADDRESS or else to the machine's latest cluster, or starts a local one. RAY_AUTH_MODE:
    should that ever start a local cluster, Ray 2.60 would write ~/.ray/auth_token, after which
    every ``ray start`` of the user enables token auth and drivers connecting by address fail
    (``AuthenticationError: ... InvalidAuthToken``)."""
    env = {**os.environ, **RAY_ENV, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": ray}
    with log.open("w") as out:
        return subprocess.Popen([DJ_PROCESS, "--config", str(config), *args], env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=config.parent)


def events(job_dir: Path) -> list[dict]:
    """Data-Juicer's event log of a job (every run of it: one ``events_*.jsonl`` each)."""
    return [json.loads(line) for path in sorted(job_dir.glob("events_*.jsonl"))
            for line in path.read_text().splitlines() if line.strip()]


def checkpointed(job_dir: Path) -> set[int]:
    """Partitions whose checkpoint Data-Juicer finished writing (the event follows the write)."""
    return {e["partition_id"] for e in events(job_dir) if e["event_type"] == "checkpoint_save"}


def video_flags(row: dict) -> list[bool]:
    return [v["from_store"] for v in row[Fields.meta][META_KEY]["videos"]]


@pytest.mark.ray  # about 90 s on 2 cores: CI runs the Ray tests in their own step
def test_ray_partitioned_checkpoints_and_resumes(tmp_path, qwen3, ray_cluster,  # noqa: F811
                                                 ray_address):  # noqa: F811
    config = partitioned_recipe(tmp_path, qwen3, ray_address)
    jobs, store = tmp_path / "jobs", tmp_path / "store.sqlite"

    # 1. Start; SIGKILL the whole dj-process group once a partition is checkpointed and a
    # caption of the next one is in the result store (that partition is then in flight).
    killed = start(config, tmp_path / "killed.log", ray_address)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    job_dir = None
    while killed.poll() is None and time.monotonic() < deadline:
        job_dir = next(jobs.glob("*/"), None)
        done = checkpointed(job_dir) if job_dir else set()
        if done and stored_count(store) > len(done) * ROWS // PARTITIONS:
            break
        time.sleep(0.1)
    still_running = killed.poll() is None
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    log = (tmp_path / "killed.log").read_text()
    assert still_running, f"the job ended before it could be killed:\n{log[-4000:]}"
    assert job_dir is not None, log[-4000:]
    done = checkpointed(job_dir)
    assert done and len(done) < PARTITIONS, (done, log[-4000:])
    job_id = job_dir.name
    assert "Started a local Ray instance" not in log  # it ran on the cluster of the fixture
    assert f"Resume token: {job_id}" in log  # what Data-Juicer tells the user to resume with
    ray_cluster.wait_for_no_task()  # Ray stops a dead driver's workers: nothing writes now
    stored_before = stored_count(store)
    before = events(job_dir)

    # 2. Resume the way Data-Juicer documents: the same command plus --resume JOB_ID.
    resumed = start(config, tmp_path / "resumed.log", ray_address, "--resume", job_id)
    resumed.wait(timeout=RUN_TIMEOUT_S)
    log = (tmp_path / "resumed.log").read_text()
    assert resumed.returncode == 0, log[-4000:]

    # Every row is there once, captioned, with its record.
    rows = list(read_rows(tmp_path / "out" / "result.jsonl"))
    inputs = [json.loads(line)["videos"] for line in
              (tmp_path / "input.jsonl").read_text().splitlines()]
    assert sorted(r["videos"] for r in rows) == sorted(inputs)
    special = list(get_special_tokens().values())
    for row in rows:
        assert row[Fields.meta][META_KEY]["status"] == "captioned"
        assert all(captions_after_video_tokens(row["text"], V, special))

    # Finished partitions were loaded from their checkpoints, not captioned again: Data-Juicer
    # logged a checkpoint load and no new save for each, and their rows carry the first run's
    # records (captioned again, they would have found their captions in the result store).
    after = events(job_dir)[len(before):]
    loaded = {e["partition_id"] for e in after if e["event_type"] == "checkpoint_load"}
    saved = {e["partition_id"] for e in after if e["event_type"] == "checkpoint_save"}
    assert loaded == done and saved == set(range(PARTITIONS)) - done, (loaded, saved, done)
    info = json.loads((job_dir / "checkpoints" / "partitioning_info.json").read_text())
    partition_of = {inputs[i][0]: p["partition_id"] for p in info["partitions"]
                    for i in range(p["start_row"], p["end_row"])}
    reused = [r["videos"][0] for r in rows if video_flags(r) == [True]]
    assert not any(partition_of[v] in done for v in reused)
    # The partitions redone are served by the op's result store: every caption stored before
    # the kill outside the finished partitions is reused, nothing else.
    in_finished = sum(p["end_row"] - p["start_row"] for p in info["partitions"]
                      if p["partition_id"] in done)
    assert len(reused) == stored_before - in_finished, (reused, stored_before, in_finished)
    with SQLiteStore(store) as opened:
        assert opened.integrity() == "ok"
    assert stored_count(store) == ROWS

    # 3. Resuming a finished job does nothing: the export is left as it is.
    export_files = {f: f.stat().st_mtime_ns for f in (tmp_path / "out").rglob("*") if f.is_file()}
    again = start(config, tmp_path / "again.log", ray_address, "--resume", job_id)
    again.wait(timeout=RUN_TIMEOUT_S)
    log = (tmp_path / "again.log").read_text()
    assert again.returncode == 0 and "Job is already completed - nothing to do" in log, log[-4000:]
    assert {f: f.stat().st_mtime_ns for f in (tmp_path / "out").rglob("*")
            if f.is_file()} == export_files
    print(f"killed with partitions {sorted(done)} checkpointed and {stored_before} captions "
          f"stored: {len(reused)} reused from the store on resume; job {job_id}")


def checkpointed_ops(cfg) -> list[str]:
    """Ops after which the ray_partitioned executor writes a checkpoint, with ``cfg``'s
    ``checkpoint`` settings read the way ``PartitionedRayExecutor.__init__`` reads them."""
    manager = RayCheckpointManager(
        ckpt_dir="unused", checkpoint_enabled=cfg.checkpoint.enabled,
        checkpoint_strategy=CheckpointStrategy(cfg.checkpoint.strategy),
        checkpoint_n_ops=cfg.checkpoint.n_ops, checkpoint_op_names=cfg.checkpoint.op_names)
    names = [next(iter(op)) for op in cfg.process]
    return [name for i, name in enumerate(names) if manager.should_checkpoint(i, name)]


@pytest.mark.usefixtures("isolated_config")
def test_the_recipe_checkpoints_after_captioning_and_the_default_would_not(tmp_path):
    path = ROOT / "recipes/caption_ray_partitioned.yaml"
    cfg = init_configs(["--config", str(path)], load_configs_only=True)
    assert checkpointed_ops(cfg) == ["vlm_video_captioning_mapper"]
    recipe = load_recipe(path)
    del recipe["checkpoint"]  # Data-Juicer's defaults: every_n_ops, n_ops 5
    cfg = init_configs(["--config", str(write_recipe(recipe, tmp_path / "r.yaml"))],
                       load_configs_only=True)
    assert cfg.checkpoint.strategy == "every_n_ops" and checkpointed_ops(cfg) == []
