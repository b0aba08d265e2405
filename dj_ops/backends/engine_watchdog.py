"""Kill an engine's processes when the process that owns them ends, however it ends.

vLLM's engine runs in processes of its own, stopped by its finalizer at a normal exit. A
``dj-process`` run ended without it (no ``atexit`` handler ran in it) and left the engine
process alive, holding the run's output pipe: a caller reading that pipe then waited for ever.
Nothing in the dying process can be relied on, so a small watchdog process, started beside the
engine, waits until its parent (the owner) is gone and then kills the engine's processes. It
holds none of the owner's pipes, and ends by itself when the engine's processes end first.

``python -m dj_ops.backends.engine_watchdog PID [PID ...]`` (started by :func:`watch`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

POLL_S = 0.5


def watch(pids: list[int]) -> subprocess.Popen | None:
    """Start the watchdog of ``pids`` as a child of this process (None when no pid)."""
    if not pids:
        return None
    return subprocess.Popen([sys.executable, "-m", __name__, *map(str, pids)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, close_fds=True)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def main(argv: list[str] | None = None) -> None:
    pids = [int(p) for p in (argv if argv is not None else sys.argv[1:])]
    owner = os.getppid()
    while any(alive(pid) for pid in pids):
        if os.getppid() != owner:  # the owner ended: this process was handed to another parent
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return
        time.sleep(POLL_S)


if __name__ == "__main__":
    main()
