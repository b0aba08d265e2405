"""Which machine, Ray node and process this is: each record's ``worker``."""

from __future__ import annotations

import os
import socket
import sys


def worker_identity() -> dict:
    """``host`` (the machine's name), ``node`` (the Ray node id when this process is a Ray
    worker or driver, else "") and ``pid``. Several Ray nodes may share one host (a test
    cluster); the node id tells them apart."""
    return {"host": socket.gethostname(), "node": _ray_node_id(), "pid": os.getpid()}


def _ray_node_id() -> str:
    ray = sys.modules.get("ray")  # never imports Ray where the op runs without it
    if ray is None or not ray.is_initialized():
        return ""
    return ray.get_runtime_context().get_node_id()
