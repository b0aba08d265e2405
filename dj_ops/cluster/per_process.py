"""What copies of one op share in a process under Ray's task mode: its captioner (and with it
the backend the captioner owns).

Why by hand: under Ray's task mode each task gets a fresh (unpickled) copy of the op. A worker
process that ran several tasks of the op built a new captioner for each, loading the model
again and leaving the decoding processes of the earlier ones alive (measured: 4 tasks in one
worker, 4 decode pools, 8 processes). A :class:`BackendLoader` is equal to its copies (an id
drawn when the op is built travels with them), so :func:`shared_captioner` gives the copies in
a Ray worker one captioner, as an actor has: one model load per Ray actor, per task worker
process, per ``np`` process, said in one log line. Two ops built separately never share one.
Elsewhere every copy keeps its own (a copy sent to a worker starts afresh, its tally its own).
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable

from loguru import logger

from dj_ops.backends.base import BackendConfig, build_backend


class BackendLoader:
    """Builds the op's backend (``loader(device)``; the captioner that calls it owns it).

    :param backend: the backend's name.
    :param config: its settings.
    """

    def __init__(self, backend: str, config: BackendConfig):
        self.backend, self.config = backend, config
        self._identity = uuid.uuid4().hex  # copies (pickled to workers) keep it

    def __call__(self, device: str = "cpu"):
        start = time.perf_counter()
        built = build_backend(self.backend, self.config, device=device)
        logger.info(f"model loaded: {self.config.model} on {device}, {self.backend} backend, "
                    f"{time.perf_counter() - start:.1f} s (pid {os.getpid()})")
        return built

    def __eq__(self, other) -> bool:
        return isinstance(other, BackendLoader) and other._identity == self._identity

    def __hash__(self) -> int:
        return hash(self._identity)

    def __repr__(self) -> str:
        return f"BackendLoader({self.backend!r}, {self.config.model!r})"


_CAPTIONERS: dict = {}  # BackendLoader -> (pid, captioner), in Ray worker processes


def shared_captioner(key: BackendLoader, build: Callable):
    """``build()``'s captioner, shared by every copy of the op (equal ``key``) in this Ray
    worker process; outside Ray workers a new one each time."""
    if not _in_ray_worker():
        return build()
    pid, captioner = _CAPTIONERS.get(key, (None, None))
    if pid != os.getpid():  # none yet, or inherited through a fork
        captioner = build()
        _CAPTIONERS[key] = (os.getpid(), captioner)
    return captioner


def _in_ray_worker() -> bool:
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return False
    return ray.get_runtime_context().worker.mode == ray.WORKER_MODE
