"""Every process of a job ends when the job's main process ends, however it ends; SIGTERM and
Ctrl-C stop it cleanly.

Linux does not end a child with its parent: after ``kill -9`` of ``dj-process``, Data-Juicer's
worker processes and the op's decoding processes were re-parented to PID 1 and went on
captioning into the result store (docs/findings.md). Two mechanisms, chosen per process kind:

- **The kernel's parent-death signal** (``prctl(PR_SET_PDEATHSIG, SIGKILL)``), armed *in the
  child*, in processes whose code is ours: the multiprocessing children of a process that built
  the op (Data-Juicer's ``np`` workers, which ``datasets`` forks through ``multiprocess``; its
  Manager and monitor processes; a vLLM engine core forked by the op's process), armed right
  after the fork by :func:`children_end_with_this_process`'s hook, and the op's decoding workers
  (:mod:`dj_ops.video.worker`). SIGKILL: a child of a dead job writes nothing more. The signal
  fires when the *thread* that forked the child ends, so it is armed only for children forked by
  a thread that lives as long as its process (the main thread; the decoding pool's scheduler
  thread, which ends only when the pool closes and its workers are stopped anyway); a child
  forked by another thread polls its parent instead (:data:`POLL_S`). The race (the parent gone
  before the signal was armed) is closed by comparing the parent's pid after arming.
- **A watchdog process** (:mod:`dj_ops.backends.engine_watchdog`) for processes whose code is
  not ours: vLLM's engine processes when vLLM spawns them (CUDA initialised, Ray).

The job's *main* process is never armed (a user's ``nohup dj-process ... &`` must outlive its
shell): only processes that are known children of the job are, i.e. those with a
multiprocessing parent (:func:`multiprocessing.parent_process`) or started by the op.

Stopping: in the main process, while the op runs (:func:`stop_on_signals`), SIGTERM raises
:class:`JobStopped` in the main thread (Ctrl-C raises ``KeyboardInterrupt``), which unwinds the
run: Data-Juicer's pool is terminated, i.e. each worker gets SIGTERM. A worker running the op
(:func:`guard_op_process`) ignores Ctrl-C (its parent stops it) and turns the first SIGTERM into
:class:`JobStopped`, which unwinds the batch through :func:`results_kept`: the results that
are complete are written to the result store before the worker exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import multiprocessing
import multiprocessing.util
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

from loguru import logger

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
POLL_S = 0.25  # a child that cannot use the death signal checks its parent this often
# exit status of a child whose parent was gone before its death signal was armed
PARENT_GONE_STATUS = 128 + signal.SIGKILL

# "guarded": the pid of the process that armed itself (a forked child inherits this dict)
_state = {"guarded": 0, "hooks": False, "fork_from_main_thread": True, "stop": None}


class JobStopped(SystemExit):
    """Raised in a process of the job asked to stop (SIGTERM). A ``SystemExit``: handlers of
    ``Exception`` let it through, and a multiprocessing worker exits on it quietly with
    status 128 + the signal's number."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


def _libc_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _arm_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent (thread) ends."""
    prctl = _libc_prctl()
    return prctl is not None and prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def _poll_parent(parent_pid: int) -> None:
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(POLL_S)
        os._exit(PARENT_GONE_STATUS)

    threading.Thread(target=watch, daemon=True, name="dj_ops-parent-watch").start()


def die_with_parent(parent_pid: int, *, death_signal: bool = True) -> str:
    """End this process (SIGKILL, nothing more written) when its parent ``parent_pid`` ends.

    :param death_signal: use the kernel's parent-death signal (the parent's forking thread
        lives as long as the parent); False, or where the kernel has none: a thread polling
        the parent every :data:`POLL_S` seconds.
    :returns: the mechanism used: ``"death_signal"`` or ``"poll"``.
    """
    armed = death_signal and _arm_death_signal()
    # after arming: a parent that ended before it would never send the signal
    if os.getppid() != parent_pid:
        os._exit(PARENT_GONE_STATUS)
    if armed:
        return "death_signal"
    _poll_parent(parent_pid)
    return "poll"


def _parent_pid() -> int | None:
    """The parent's pid when this process is a multiprocessing child (``multiprocessing`` or
    ``multiprocess``, which ``datasets`` uses); None in a main process."""
    parents = [multiprocessing.parent_process()]
    if "multiprocess" in sys.modules:
        parents.append(sys.modules["multiprocess"].parent_process())
    return next((p.pid for p in parents if p is not None), None)


def _note_forking_thread() -> None:
    _state["fork_from_main_thread"] = threading.current_thread() is threading.main_thread()


def _after_fork_in_child(_anchor) -> None:
    parent = _parent_pid()
    if parent is not None and _state["guarded"] != os.getpid():
        die_with_parent(parent, death_signal=_state["fork_from_main_thread"])
        _state["guarded"] = os.getpid()


class _Anchor:
    """Kept alive by this module: multiprocessing holds after-fork hooks by weak reference."""


_ANCHOR = _Anchor()


def children_end_with_this_process() -> None:
    """Make every multiprocessing child that this process forks from now on end with it
    (idempotent). Called where the op is built, so the children Data-Juicer forks to run it
    are covered from their first instruction, before any batch."""
    if _state["hooks"]:
        return
    _state["hooks"] = True
    os.register_at_fork(before=_note_forking_thread)
    multiprocessing.util.register_after_fork(_ANCHOR, _after_fork_in_child)
    try:
        import multiprocess.util
    except ImportError:  # datasets brings it; without it there is nothing to hook
        return
    multiprocess.util.register_after_fork(_ANCHOR, _after_fork_in_child)


def _stop_once(signum, _frame) -> None:
    signal.signal(signum, signal.SIG_IGN)  # a second one must not break the clean-up
    _state["stop"] = signum
    raise JobStopped(signum)


def guard_op_process() -> bool:
    """In a process about to run the op's batches: when it is a child of the job, it ends with
    its parent, leaves Ctrl-C to its parent and stops cleanly on SIGTERM. A main process is left
    as it is. Returns whether the process is such a child."""
    parent = _parent_pid()
    if parent is None or threading.current_thread() is not threading.main_thread():
        return False
    if _state["guarded"] != os.getpid():  # started by spawn: no after-fork hook ran here
        die_with_parent(parent)
        _state["guarded"] = os.getpid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_once)
    return True


@contextlib.contextmanager
def results_kept(store) -> Iterator[None]:
    """Whatever stops a batch (SIGTERM, Ctrl-C, an error), the results it completed are
    written to the result store ``store`` (None: no store) before the exception goes on."""
    try:
        yield
    except BaseException:
        if store is not None:
            try:
                store.flush()
            except Exception as error:  # noqa: BLE001 - the first exception is the one to raise
                logger.warning(f"could not write the completed results to the store: {error!r}")
        raise


def stop_requested(error: BaseException | None = None) -> str | None:
    """The signal that stopped this process (``SIGTERM``, ``SIGINT``) if it was asked to stop:
    by :func:`stop_on_signals`' handler, or ``error`` (or an exception it was raised from) is a
    ``KeyboardInterrupt``; else None."""
    if _state["stop"] is not None:
        return signal.Signals(_state["stop"]).name
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return "SIGINT"
        if isinstance(error, JobStopped):
            return error.signal_name
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """In the job's main process, while it runs the op: the first SIGTERM raises
    :class:`JobStopped` in the main thread, so the run unwinds as on Ctrl-C (a second SIGTERM
    then ends the process at once). Nothing changes outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state["stop"] = None

    def stop(signum, _frame) -> None:
        signal.signal(signum, signal.SIG_DFL)
        _state["stop"] = signum
        raise JobStopped(signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
