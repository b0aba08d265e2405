"""``dj-process`` on a multi-node Ray cluster on this machine (a head with no CPUs, two worker
nodes of one CPU each, separate raylets, every service on loopback), one result store in a
folder every node writes: rows spread over both worker nodes (Data-Juicer's Ray executor and
its partitioned one), a worker node SIGKILLed mid-job costs only its videos, and a job killed
whole resumes on another layout (one worker node) reusing every video any node stored.

Every wait is on an event: results appearing in the store, a process exiting; never a sleep.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
from data_juicer.utils.constant import Fields
from data_juicer.utils.mm_utils import SpecialTokens

from dj_ops.captioning.records import META_KEY
from dj_ops.export.dj_output import read_rows
from dj_ops.testing.clips import make_clip
from dj_ops.testing.ray_cluster import LoopbackCluster
from dj_ops.testing.recipes import load_recipe, offline_variant, write_recipe
from tests.conftest import FAST_FRAMES
from tests.store_support import comparable_rows, stored_count, stored_values

pytestmark = pytest.mark.ray  # CI runs these in their own step (.ci/run)

ROOT = Path(__file__).resolve().parents[1]
DJ_PROCESS = str(Path(sys.executable).with_name("dj-process"))
V, E = SpecialTokens.video, SpecialTokens.eoc
ROWS = 24
RUN_TIMEOUT_S = 900
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}
# 24 tokens per caption, 2 videos per generate call: each node's block of 12 rows takes
# several seconds, so that a kill lands while both nodes caption.
OP = {**FAST_FRAMES, "sampling_params": {"max_new_tokens": 24, "min_new_tokens": 24},
      "generation_batch_size": 2}


@pytest.fixture(scope="module")
def cluster():
    """Head (0 CPUs) and two worker nodes of 1 CPU, stopped after the module."""
    with LoopbackCluster(workers=2, cpus=1) as running:
        yield running


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ray_dataset")
    videos = [make_clip(folder / f"c{i:02d}.mp4", 1.0 + (i % 4) * 0.5, 8, 64 + 16 * (i % 3), 48)
              for i in range(ROWS)]
    path = folder / "videos.jsonl"
    path.write_text("".join(json.dumps({"text": f"{V} {E}", "videos": [str(v)]}) + "\n"
                            for v in videos))
    return path


RUNNING: list[subprocess.Popen] = []  # dj-process groups started, killed after each test


@pytest.fixture(autouse=True)
def no_job_left():
    """A test that fails half-way leaves no driver running."""
    yield
    while RUNNING:
        proc = RUNNING.pop()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class Job:
    """One ``dj-process`` run of a Ray recipe (its folder: recipe, log, export)."""

    def __init__(self, folder: Path, model: str, dataset: Path, store: str,
                 recipe: str = "caption_ray.yaml", **top_level):
        self.folder, self.store = folder, store
        self.export = folder / "out" / "result.jsonl"
        variant = offline_variant(
            load_recipe(ROOT / "recipes" / recipe), model=model, dataset=str(dataset),
            export=str(self.export), work_dir=str(folder / "work"),
            op_overrides={**OP, "result_store": store}, top_level={"np": 1, **top_level})
        self.config = write_recipe(variant, folder / "recipe.yaml")
        self.proc: subprocess.Popen | None = None

    def start(self, cluster: LoopbackCluster, log: str = "run") -> Job:
        """dj-process in its own process group, its output in ``log``.log."""
        env = {**cluster.driver_env(), "PYTHONPATH": str(ROOT)}
        self.log = self.folder / f"{log}.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen([DJ_PROCESS, "--config", str(self.config)], env=env,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True, cwd=self.folder)
        RUNNING.append(self.proc)
        return self

    def wait(self) -> int:
        return self.proc.wait(timeout=RUN_TIMEOUT_S)

    def output(self) -> str:
        return self.log.read_text()

    def kill(self) -> None:
        """SIGKILL the whole dj-process group (the driver and what it started)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def rows(self) -> list[dict]:
        return list(read_rows(self.export))


def record(row: dict) -> dict:
    return row[Fields.meta][META_KEY]


def wait_for_store(job: Job, enough) -> dict[str, dict]:
    """The store's results once ``enough(results)`` holds; fails if the job ends first."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        values = stored_values(job.store) if stored_count(job.store) else {}
        if enough(values):
            return values
        assert job.proc.poll() is None, f"the job ended first:\n{job.output()[-4000:]}"
        assert time.monotonic() < deadline, job.output()[-4000:]
        time.sleep(0.2)


def stored_by(values: dict[str, dict]) -> Counter:
    """Results in the store by the Ray node that generated them."""
    return Counter(value["worker"]["node"] for value in values.values())


def listening_addresses(pids: list[int]) -> set[str]:
    """The addresses every process in the trees of ``pids`` listens on (TCP and UDP)."""
    processes = []
    for pid in pids:
        root = psutil.Process(pid)
        processes += [root, *root.children(recursive=True)]
    addresses = set()
    for process in processes:
        try:
            connections = process.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        addresses |= {c.laddr.ip for c in connections
                      if c.status in (psutil.CONN_LISTEN, psutil.CONN_NONE)}
    return addresses


def assert_every_row_once(job: Job, dataset: Path) -> list[dict]:
    rows = job.rows()
    inputs = [json.loads(line)["videos"] for line in dataset.read_text().splitlines()]
    assert sorted(r["videos"] for r in rows) == sorted(inputs)
    assert all(record(r)["status"] == "captioned" for r in rows)
    return rows


def loads_per_process(job: Job, rows: list[dict]) -> dict[int, int]:
    """"model loaded" lines in the driver's log per worker process that built rows (Ray
    forwards the workers' logs to the driver)."""
    loads = Counter(int(pid) for pid in re.findall(r"model loaded: .* \(pid (\d+)\)",
                                                   job.output()))
    assert set(loads) == {record(r)["worker"]["pid"] for r in rows}, loads
    return dict(loads)


def worker_nodes(cluster: LoopbackCluster) -> set[str]:
    return {w["node_id"] for w in cluster.workers}


def ensure_workers(cluster: LoopbackCluster, count: int) -> None:
    while len(cluster.workers) < count:
        cluster.add_node()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, qwen3, cluster, dataset) -> tuple[Job, set[str]]:
    """A run on both worker nodes, never interrupted, its store a folder both nodes write;
    while it runs, every listening socket of the cluster and the driver is checked."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    job = Job(folder, qwen3, dataset, f"file://{folder / 'store'}").start(cluster)
    wait_for_store(job, lambda values: len(values) >= 1)  # workers up, captioning
    listening = listening_addresses([cluster.pid, job.proc.pid])
    assert job.wait() == 0, job.output()[-4000:]
    return job, listening


def test_rows_spread_over_both_worker_nodes_on_loopback(uninterrupted, cluster, dataset):
    job, listening = uninterrupted
    assert listening and listening <= LOOPBACK, listening
    rows = assert_every_row_once(job, dataset)
    by_node = Counter(record(r)["worker"]["node"] for r in rows)
    assert set(by_node) == worker_nodes(cluster), by_node  # both did work, the head none
    # the spread: 24 rows cut into one block of 12 per replica (the recipe's batch_size 16)
    assert "24 rows in 2 blocks of 12 for 2 replicas" in job.output()
    assert sorted(by_node.values()) == [12, 12]
    assert set(loads_per_process(job, rows).values()) == {1}  # one model load per replica
    # the folder store holds every video once, written by both nodes
    assert stored_by(stored_values(job.store)) == by_node


def test_ray_partitioned_spreads_rows_over_both_nodes(tmp_path, qwen3, cluster, dataset,
                                                      uninterrupted):
    ensure_workers(cluster, 2)
    job = Job(tmp_path, qwen3, dataset, f"file://{tmp_path / 'store'}",
              recipe="caption_ray_partitioned.yaml",
              partition={"mode": "manual", "num_of_partitions": 2,
                         "gpu_preflight_enabled": False})
    assert job.start(cluster).wait() == 0, job.output()[-4000:]
    rows = assert_every_row_once(job, dataset)
    assert set(Counter(record(r)["worker"]["node"] for r in rows)) == worker_nodes(cluster)
    assert comparable_rows(rows) == comparable_rows(uninterrupted[0].rows())


def test_a_lost_node_costs_only_its_videos(tmp_path, qwen3, cluster, dataset, uninterrupted):
    ensure_workers(cluster, 2)
    store = f"file://{tmp_path / 'store'}"
    job = Job(tmp_path, qwen3, dataset, store).start(cluster, "killed_node")
    # SIGKILL a worker node (raylet, its Ray workers and their decoders) once it has stored
    # two results of its own, while its block is half done.
    stored = wait_for_store(job, lambda values: max(stored_by(values).values(), default=0) >= 2)
    victim = stored_by(stored).most_common(1)[0][0]
    cluster.kill_node(victim)
    before = stored_values(store)
    by_victim = {k for k, v in before.items() if v["worker"]["node"] == victim}
    # Ray Data retries a map task lost with its node, without limit ("Task _map_task failed.
    # There are infinite retries remaining"): the job completes on the other node.
    assert job.wait() == 0, job.output()[-4000:]
    assert "the node it was running on is dead" in job.output()
    rows = assert_every_row_once(job, dataset)
    assert comparable_rows(rows) == comparable_rows(uninterrupted[0].rows())
    survivor = worker_nodes(cluster)
    assert {record(r)["worker"]["node"] for r in rows} == survivor  # the lost node's rows too
    # what the lost node stored before it died was reused, never generated again
    after = stored_values(store)
    assert {k for k, v in after.items() if v["worker"]["node"] == victim} == by_victim
    reused_in_job = sum(all(v["from_store"] for v in record(r)["videos"]) for r in rows)
    assert reused_in_job == len(by_victim)

    # the same command again, on the one node left: every stored video reused, the export
    # replaced (export_extra_args mode overwrite: Ray would append a second copy of every row)
    stored_now = stored_count(store)
    rerun = job.start(cluster, "rerun")
    assert rerun.wait() == 0, rerun.output()[-4000:]
    rows = assert_every_row_once(rerun, dataset)
    reused = sum(all(v["from_store"] for v in record(r)["videos"]) for r in rows)
    assert reused == stored_now
    assert comparable_rows(rows) == comparable_rows(uninterrupted[0].rows())
    print(f"node kill: {len(before)} videos stored when the node died, {len(by_victim)} of them "
          f"by it; the job completed on the other node, reusing those {reused_in_job} and "
          f"generating {ROWS - reused_in_job}; the re-run reused {reused}, generated "
          f"{ROWS - reused}")


def test_a_killed_job_resumes_on_one_node(tmp_path, qwen3, cluster, dataset, uninterrupted):
    ensure_workers(cluster, 2)
    store = f"file://{tmp_path / 'store'}"
    job = Job(tmp_path, qwen3, dataset, store).start(cluster, "killed_job")
    # SIGKILL the whole job as soon as both nodes have stored results
    wait_for_store(job, lambda values: len(stored_by(values)) == 2)
    job.kill()
    cluster.wait_for_no_task()  # Ray stops a dead driver's workers: nothing writes now
    stored = stored_count(store)
    by_node = stored_by(stored_values(store))
    assert set(by_node) == worker_nodes(cluster) and stored < ROWS, by_node
    cluster.kill_node(next(iter(worker_nodes(cluster))))  # the new layout: one worker node
    rerun = job.start(cluster, "rerun")  # the same command
    assert rerun.wait() == 0, rerun.output()[-4000:]
    rows = assert_every_row_once(rerun, dataset)
    reused = sum(all(v["from_store"] for v in record(r)["videos"]) for r in rows)
    assert reused == stored  # every video stored by either node, reused on the other
    assert {record(r)["worker"]["node"] for r in rows} == worker_nodes(cluster)
    # its blocks (two of 16 and 8 rows: two tasks) load the model once per worker process
    assert "24 rows in 2 blocks of 16 for 1 replicas" in rerun.output()
    assert set(loads_per_process(rerun, rows).values()) == {1}
    assert comparable_rows(rows) == comparable_rows(uninterrupted[0].rows())
    print(f"job kill: {stored} videos stored before the kill ({sorted(by_node.values())} by the "
          f"two nodes); the re-run on one node reused {reused}, generated {ROWS - reused}")
