"""Kill an engine's processes when the process that owns them ends, however it ends.

vLLM's engine runs in processes of its own, which vLLM 0.32's engine core does not tie to its
parent. When vLLM forks it, the fork hook of :mod:`dj_ops.runtime.lifetime` arms the kernel's
parent-death signal in it; when vLLM spawns it (CUDA initialised, inside a Ray actor), no code
of ours runs there. For both, a small watchdog process, started by the owner *before* the engine
(so a kill during the engine's start, minutes for a large model on a GPU, is covered too):

- until the engine is up, it follows every process the owner starts (and their children);
- once told the engine's pids (:meth:`EngineWatchdog.engine_started`), it follows those and
  their children only, and ends when they have ended (a clean shutdown);
- when the owner is gone (this watchdog re-parented: the owner's pid is given, so an owner
  that ended before the watchdog looked is seen too), it kills every process it follows that
  still runs, checked by start time against pid reuse, and ends.

It holds none of the owner's pipes but its own stdin (the pids), and polls every
:data:`POLL_S` seconds (a process that the owner starts and that ends or is orphaned within one
poll is not seen). ``python -m dj_ops.backends.engine_watchdog OWNER_PID [PID_BEFORE ...]``.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

POLL_S = 0.5
FAILED = "failed"  # the owner's line when the engine did not start


def _process_table() -> dict[int, tuple[int, int]]:
    """Every process: pid -> (parent pid, start time in clock ticks); zombies left out."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            table[int(entry)] = (int(fields[1]), int(fields[19]))
    return table


def descendants(roots: set[int], table: dict[int, tuple[int, int]]) -> set[int]:
    """``roots`` (those running) and every process below them in ``table``."""
    found = {pid for pid in roots if pid in table}
    frontier = set(found)
    while frontier:
        frontier = {pid for pid, (parent, _) in table.items()
                    if parent in frontier and pid not in found}
        found |= frontier
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class _Follower:
    """The processes one watchdog follows, by pid and start time."""

    def __init__(self, owner: int, before: set[int]):
        self.owner = owner
        self.before = before  # the owner's processes from before the engine: not the engine's
        self.followed: dict[int, int] = {}  # pid -> start time
        self.chosen: set[int] | None = None  # the engine's pids, once given

    def refresh(self) -> None:
        table = _process_table()
        if self.chosen is None:
            roots = descendants({self.owner}, table) - self.before - {self.owner, os.getpid()}
        else:
            roots = descendants(self.chosen | set(self.followed), table)
        for pid in roots:
            self.followed.setdefault(pid, table[pid][1])
        # forget what ended (its pid may be reused)
        self.followed = {pid: start for pid, start in self.followed.items()
                         if table.get(pid, (0, None))[1] == start}

    def choose(self, pids: set[int]) -> None:
        """The engine is up: follow ``pids`` and their children only."""
        self.chosen = pids
        table = _process_table()
        self.followed = {pid: start for pid, start in self.followed.items()
                         if pid in descendants(pids, table)}

    def kill(self) -> None:
        self.refresh()
        for pid in self.followed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _read_pids(stream) -> set[int] | str | None:
    """The engine's pids when the owner has written them (None until then; :data:`FAILED`
    when the engine failed to start)."""
    if not select.select([stream], [], [], 0)[0]:
        return None
    line = stream.readline()
    if line.strip() == FAILED:
        return FAILED
    return {int(p) for p in line.split()} if line else None


def main(argv: list[str] | None = None) -> None:
    owner, *before = map(int, argv if argv is not None else sys.argv[1:])
    follower = _Follower(owner, set(before))
    told = False
    while True:
        if os.getppid() != owner:  # the owner ended: this process was handed to another parent
            follower.kill()
            return
        if not told and (pids := _read_pids(sys.stdin)) is not None:
            if pids == FAILED:  # what the failed start left running
                follower.kill()
                return
            follower.choose(pids)
            told = True
        seen = set(follower.followed)
        follower.refresh()
        if set(follower.followed) != seen:  # what it follows, for whoever reads its stdout
            print(" ".join(map(str, sorted(follower.followed))), flush=True)
        if told and not follower.followed:  # the engine ended first (or never started)
            return
        time.sleep(POLL_S)


class EngineWatchdog:
    """The owner's handle: start it before the engine, tell it the engine's pids once up.

    :param report: where the watchdog writes the pids it follows, a line each time they change
        (``subprocess.PIPE``: read them from ``process.stdout``); default: nowhere.
    """

    def __init__(self, report=subprocess.DEVNULL):
        owner = os.getpid()
        before = descendants({owner}, _process_table()) - {owner}
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__, str(owner), *map(str, sorted(before))],
            stdin=subprocess.PIPE,
            stdout=report, stderr=subprocess.DEVNULL, close_fds=True, text=True)

    def engine_started(self, pids: list[int]) -> None:
        """The engine's processes (none: it runs in this process; the watchdog ends)."""
        self._tell(" ".join(map(str, pids)))

    def engine_failed(self) -> None:
        """The engine did not start: what its start left running is killed now."""
        self._tell(FAILED)

    def _tell(self, line: str) -> None:
        try:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
        except OSError:  # it ended already
            pass


@contextlib.contextmanager
def watch_engine(report=subprocess.DEVNULL) -> Iterator[EngineWatchdog]:
    """A watchdog for the engine started in the block, which calls
    :meth:`EngineWatchdog.engine_started`; when the block fails, what the failed start left
    running is killed."""
    watchdog = EngineWatchdog(report)
    try:
        yield watchdog
    except BaseException:
        watchdog.engine_failed()
        raise


if __name__ == "__main__":
    main()
