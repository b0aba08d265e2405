"""The CogVLM2 caption server (``servers/cogvlm2``) for tests: its environment, a stand-in
remote-code checkpoint built in that environment, and the server as a child process.

The server's environment is made by ``bash servers/cogvlm2/setup_env.sh`` (transformers 4.42,
no dj_ops dependencies); :func:`env_python` finds it, or the interpreter named by
``DJ_OPS_COGVLM2_PYTHON``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_DIR = REPO_ROOT / "servers" / "cogvlm2"
STANDIN_DIR = Path(__file__).resolve().parent / "cogvlm2_standin"
PYTHON_ENV_VAR = "DJ_OPS_COGVLM2_PYTHON"
START_TIMEOUT_S = 300.0


def server_env() -> dict[str, str]:
    """The environment for the server's interpreter: this one without ``PYTHONPATH``, which
    may point at a dj_ops checkout (the server's environment must not see dj_ops)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def env_python() -> Path | None:
    """The server environment's interpreter, or None when it has not been set up."""
    named = os.environ.get(PYTHON_ENV_VAR)
    python = Path(named) if named else SERVER_DIR / ".venv" / "bin" / "python"
    return python if python.is_file() else None


def build_standin(python: Path, out_dir: Path, record_dir: Path, seed: int = 0) -> Path:
    """Build the stand-in checkpoint with ``python`` (the server's environment); its calls
    will be recorded under ``record_dir``."""
    subprocess.run([str(python), str(STANDIN_DIR / "build_checkpoint.py"), str(out_dir),
                    "--record-dir", str(record_dir), "--seed", str(seed)],
                   check=True, capture_output=True, text=True, timeout=600, env=server_env())
    return out_dir


def shared_standin(python: Path, root: Path) -> tuple[Path, Path]:
    """The stand-in checkpoint under ``root`` and the folder its calls are recorded in, built
    on first use (a test session's modules share one: a build takes a minute here)."""
    checkpoint, record_dir = root / "checkpoint", root / "calls"
    if not (checkpoint / "config.json").is_file():
        build_standin(python, checkpoint, record_dir)
    return checkpoint, record_dir


def cuda_only_copy(checkpoint: Path, out_dir: Path) -> Path:
    """A copy of the stand-in whose remote code also imports triton at top level, from a
    ``util.py`` its modelling file imports, as the real checkpoint's does (there, for a rotary
    embedding that runs only on CUDA tensors)."""
    shutil.copytree(checkpoint, out_dir)
    (out_dir / "util.py").write_text('"""Stands for the real util.py."""\nimport triton\n')
    modeling = out_dir / "modeling_cogvlm.py"
    modeling.write_text(modeling.read_text() + "\nfrom .util import triton  # noqa\n")
    return out_dir


def read_calls(record_dir: Path) -> list[dict]:
    """What the stand-in model recorded, one dict per call, in order."""
    path = Path(record_dir) / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``python -m dj_ops_cogvlm2_server`` on a free loopback port, owned by a ``with`` block:
    started and waited for on entry, stopped (then killed if it lingers) on exit.

    :param python: the server environment's interpreter.
    :param model: checkpoint folder.
    :param log_path: file receiving the server's output.
    :param args: further command-line arguments.
    """

    def __init__(self, python: Path, model: Path, log_path: Path, *args: str):
        self.port = free_port()
        self.command = [str(python), "-m", "dj_ops_cogvlm2_server", "--model", str(model),
                        "--port", str(self.port), "--allow-local-files", *args]
        self.log_path = Path(log_path)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The API root to give the ``openai`` backend as ``api_base``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> ServerProcess:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                            cwd=SERVER_DIR.parent, env=server_env())
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited ({self.process.returncode}):\n"
                                   f"{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        raise TimeoutError(f"the server did not answer within {START_TIMEOUT_S} s:\n"
                           f"{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __exit__(self, *exc) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
