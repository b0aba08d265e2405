"""Shared pieces of the vLLM-on-CPU tier (``pytest -m vllm`` in ``.venv-vllm``)."""

from __future__ import annotations

import threading
import time

import psutil

from dj_ops.video import FrameSettings

# A small engine on a CPU-only machine: float32 (parity with transformers), 10 % of RAM for the
# worker (on CPU, gpu_memory_utilization is a fraction of RAM; 5 % can leave no room for the KV
# cache), no graph capture.
ENGINE = {"dtype": "float32", "gpu_memory_utilization": 0.1, "max_model_len": 4096,
          "enforce_eager": True}
FRAMES = {"max_frames": 8, "min_frames": 4, "max_pixels": 128 * 128, "min_pixels": 32 * 32}
SIZE_FACTOR = {"qwen3_vl": 32, "qwen2_5_vl": 28}


def frame_settings(family: str) -> FrameSettings:
    return FrameSettings(**FRAMES, size_factor=SIZE_FACTOR[family])


def engine_core_processes() -> list[psutil.Process]:
    """This process's vLLM engine-core children (``VLLM::EngineCore``)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "EngineCore" in " ".join(child.cmdline()) + child.name():
                found.append(child)
        except psutil.Error:
            continue
    return found


class EngineKiller(threading.Thread):
    """Kills the engine core of ``backend`` ``times`` times, each time once it has requests in
    flight: a crash in the middle of a batch."""

    def __init__(self, backend, times: int, timeout_s: float = 300.0):
        super().__init__(daemon=True)
        self.backend, self.times, self.kills = backend, times, 0
        self.deadline = time.monotonic() + timeout_s

    def run(self) -> None:
        while self.kills < self.times and time.monotonic() < self.deadline:
            llm = self.backend.llm
            try:
                busy = llm is not None and llm.llm_engine.get_num_unfinished_requests() > 0
            except Exception:  # noqa: BLE001 - the engine is being rebuilt
                busy = False
            cores = engine_core_processes() if busy else []
            if cores:
                for core in cores:
                    core.kill()
                self.kills += 1
                while self.backend.llm is llm and time.monotonic() < self.deadline:
                    time.sleep(0.05)  # until the backend has rebuilt its engine
            time.sleep(0.05)
