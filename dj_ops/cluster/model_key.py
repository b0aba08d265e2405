"""The op's key in Data-Juicer's model zoo: one model per process, however many copies of the op.

Why by hand: Data-Juicer caches models per process in ``MODEL_ZOO``, a dict keyed by the op's
``model_key``. A ``functools.partial`` key hashes by identity, so every unpickled copy of the
op misses the cache. Under Ray's task mode each task gets a fresh copy of the op: a worker
process that runs many tasks loaded the model once per task and kept every copy in
``MODEL_ZOO``, its memory growing with each task. A :class:`BackendLoader` is equal to its
copies (an id drawn when the op is built travels with them), so a process loads the model of
one op once (one load per Ray actor, per task worker process, per ``np`` process), and says so
in one log line. Two ops built separately never share a model, as before.
"""

from __future__ import annotations

import os
import time
import uuid

from loguru import logger

from dj_ops.backends.base import BackendConfig, build_backend


class BackendLoader:
    """Builds the op's backend (``loader(device)``, as ``get_model`` calls it).

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
