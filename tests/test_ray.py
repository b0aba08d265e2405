"""The Ray recipe on a real local Ray cluster (loopback): same rows as the default executor."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from data_juicer.utils.mm_utils import SpecialTokens

from tests.test_recipes import clips, run_offline

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
V, E = SpecialTokens.video, SpecialTokens.eoc
PORT_OPTIONS = ("--port", "--dashboard-port",
                "--dashboard-agent-listen-port", "--metrics-export-port",
                "--runtime-env-agent-port")
START_TIMEOUT_S = 90


def free_ports(count: int) -> list[int]:
    """Ports free now on loopback (held open together so that they differ)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def stop_group(process: subprocess.Popen) -> None:
    """Stop the Ray head we started: its process group (gcs, raylet, workers), nothing else.
    ``ray stop`` is not used: it stops every Ray process of the user on the machine."""
    for sig, wait_s in ((signal.SIGTERM, 3), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory):
    """A one-node Ray cluster on 127.0.0.1 with 2 CPUs, its files in a temp dir; workers import
    this checkout's dj_ops (PYTHONPATH is inherited from ``ray start``)."""
    temp = tmp_path_factory.mktemp("ray")
    ports = free_ports(len(PORT_OPTIONS))
    command = [RAY, "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
               "--num-cpus", "2", "--object-store-memory", str(200 * 1024**2),
               "--disable-usage-stats", "--include-dashboard", "false", "--temp-dir", str(temp)]
    for option, port in zip(PORT_OPTIONS, ports):
        command += [option, str(port)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_TMPDIR": str(temp)}
    log = temp / "ray_start.log"
    with log.open("w") as out:
        head = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while "Ray runtime started" not in log.read_text():
            assert head.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        yield f"127.0.0.1:{ports[0]}"
    finally:
        stop_group(head)


def comparable(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: (r["videos"], r["text"]))


@pytest.mark.slow  # about 80 s: CI runs it in its slow step (.ci/run)
def test_ray_recipe_equals_the_default_executor(tmp_path, qwen3, ray_address):
    videos = clips(tmp_path, [2.0, 3.0, 2.5, 1.5, 2.0])
    samples = [{"text": f"{V} {E}", "videos": [v]} for v in videos]
    samples.append({"text": f"{V} first {E}{V} second {E}", "videos": videos[:2]})
    overrides = {"batch_size": 2}  # several Ray tasks, each a batch of its own
    on_ray = run_offline("caption_ray.yaml", tmp_path / "ray", qwen3, samples, overrides,
                         top_level={"ray_address": ray_address})
    default = run_offline("caption_ray.yaml", tmp_path / "default", qwen3, samples, overrides,
                          top_level={"executor_type": "default"})
    assert len(on_ray) == len(samples)
    assert comparable(on_ray) == comparable(default)
    assert (tmp_path / "ray" / "out" / "result.jsonl").is_dir()  # Ray writes shards
