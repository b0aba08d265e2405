"""A multi-node Ray cluster on this machine, every service on loopback, for tests and benchmarks.

``python -m dj_ops.testing.ray_cluster --workers 2 --cpus 1 --temp DIR`` starts a head node
with no CPUs (it only schedules) and worker nodes as separate raylets
(``ray.cluster_utils.Cluster``), prints one JSON line describing them, then obeys one command
per line of stdin, answering each with one JSON line:

- ``add``: start another worker node; answers its description;
- ``kill NODE_ID``: SIGKILL the node's raylet and every process under it (its Ray workers and
  what they started), then its agents, as a lost machine; answers the pids killed;
- ``nodes``: the nodes started and not killed.

It stops the cluster when its stdin ends: when the parent closes it, or dies however it died.
Ray's own reaper process stops the nodes if this process is killed.

:class:`LoopbackCluster` runs it from a test. Why a process of its own: ``cluster_utils`` keeps
the cluster in module globals of the process that starts it and writes the latest cluster's
address for every later ``ray.init()`` of the user; here that file and every socket stay in
the cluster's own temporary folder (``RAY_TMPDIR``), and nothing leaks into the test process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

LOOPBACK = "127.0.0.1"
OBJECT_STORE_BYTES = 80 * 1024**2  # per node; rows of video paths need little
# For every process that talks to the cluster: Ray 2.60 picks the machine's own address for a
# node unless clusters are "not enabled", which makes every node and driver use 127.0.0.1;
# token auth off (docs/findings.md, "ray_partitioned"); no usage reporting.
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled",
           "RAY_USAGE_STATS_ENABLED": "0"}


def describe(node) -> dict:
    """A node as the parent sees it: its id, address and raylet pid."""
    from ray._private import ray_constants

    raylet = node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process
    return {"node_id": node.node_id, "ip": node.node_ip_address, "raylet_pid": raylet.pid}


def kill_node(cluster, node) -> list[int]:
    """SIGKILL the node's raylet and all its descendants at once, then its other processes."""
    import psutil

    raylet = psutil.Process(describe(node)["raylet_pid"])
    victims = [raylet, *raylet.children(recursive=True)]
    for process in victims:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(victims, timeout=30)
    cluster.remove_node(node, allow_graceful=False)  # its agents; waits for every process
    return [p.pid for p in victims]


def serve(workers: int, cpus: float, temp: str) -> None:
    from ray.cluster_utils import Cluster

    global _replies
    _replies = os.fdopen(os.dup(1), "w")  # answers only: whatever Ray prints goes to stderr
    os.dup2(2, 1)
    temp = os.path.join(temp, "ray")  # where Ray looks under RAY_TMPDIR (the address file)
    os.makedirs(temp, exist_ok=True)

    cluster = Cluster(initialize_head=True, shutdown_at_exit=True, head_node_args={
        "num_cpus": 0, "node_ip_address": LOOPBACK, "include_dashboard": False,
        "temp_dir": temp, "object_store_memory": OBJECT_STORE_BYTES})
    nodes = {}

    def add() -> dict:
        node = cluster.add_node(num_cpus=cpus, node_ip_address=LOOPBACK,
                                object_store_memory=OBJECT_STORE_BYTES)
        nodes[node.node_id] = node
        return describe(node)

    added = [add() for _ in range(workers)]
    cluster.wait_for_nodes()
    reply({"address": cluster.address, "head": describe(cluster.head_node), "workers": added})
    try:
        for line in sys.stdin:
            command, *args = line.split()
            if command == "add":
                reply(add())
            elif command == "kill":
                reply({"killed": kill_node(cluster, nodes.pop(args[0]))})
            elif command == "nodes":
                reply({"workers": [describe(n) for n in nodes.values()]})
            else:
                reply({"error": f"unknown command {command!r}"})
    finally:
        cluster.shutdown()


_replies = sys.stdout


def reply(message: dict) -> None:
    print(json.dumps(message), file=_replies, flush=True)


class LoopbackCluster:
    """The cluster above, run in a child process; a context manager that stops it.

    :param workers: worker nodes to start with.
    :param cpus: CPUs of each worker node.
    """

    def __init__(self, workers: int = 2, cpus: float = 1, temp: str | None = None):
        # short: Ray's socket paths under it must stay within the 107 bytes Unix allows
        self._own_temp = temp is None
        self.temp = temp or tempfile.mkdtemp(prefix="djray")
        self.env = {**os.environ, **RAY_ENV, "RAY_TMPDIR": self.temp}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "dj_ops.testing.ray_cluster", "--workers", str(workers),
             "--cpus", str(cpus), "--temp", self.temp],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=self.env,
            cwd=Path(__file__).resolve().parents[2])
        self.pid = self._process.pid
        started = self._answer()
        self.address: str = started["address"]
        self.head: dict = started["head"]
        self.workers: list[dict] = started["workers"]

    def driver_env(self) -> dict[str, str]:
        """The environment of a driver (``dj-process``) that must run on this cluster; every
        log line of the workers reaches it (Ray would fold alike lines of several workers)."""
        return {**self.env, "RAY_ADDRESS": self.address, "RAY_DEDUP_LOGS": "0"}

    def add_node(self) -> dict:
        node = self._ask("add")
        self.workers.append(node)
        return node

    def kill_node(self, node_id: str) -> list[int]:
        killed = self._ask(f"kill {node_id}")["killed"]
        self.workers = [w for w in self.workers if w["node_id"] != node_id]
        return killed

    def tasks_running(self, name: str = "process_batched") -> list:
        """The Ray workers running a task named ``name`` now (Ray titles a busy worker
        ``ray::TASK``)."""
        import psutil

        running = []
        for process in psutil.Process(self.pid).children(recursive=True):
            try:
                if name in " ".join(process.cmdline()):
                    running.append(process)
            except psutil.NoSuchProcess:
                pass
        return running

    def wait_for_no_task(self, name: str = "process_batched", timeout_s: float = 600) -> None:
        """Wait until no worker runs a task named ``name`` (after its driver was killed: Ray
        stops a dead driver's workers, and starts no new task of it)."""
        import psutil

        psutil.wait_procs(self.tasks_running(name), timeout=timeout_s)
        if self.tasks_running(name):
            raise TimeoutError(f"Ray workers still run {name} after {timeout_s} s")

    def _ask(self, command: str) -> dict:
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        return self._answer()

    def _answer(self) -> dict:
        line = self._process.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError(f"the Ray test cluster exited (code {self._process.returncode})")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def close(self) -> None:
        """Stop every node (stdin closed), and kill the cluster process if it hangs."""
        if self._process.poll() is None:
            self._process.stdin.close()
            try:
                self._process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._own_temp:
            shutil.rmtree(self.temp, ignore_errors=True)

    def __enter__(self) -> LoopbackCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cpus", type=float, default=1)
    parser.add_argument("--temp", required=True)
    args = parser.parse_args(argv)
    serve(args.workers, args.cpus, args.temp)


if __name__ == "__main__":
    main()
