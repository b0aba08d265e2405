"""Every process of a job ends with the job's main process, however it ends; SIGTERM stops a
worker cleanly, its completed results stored. Real processes, real signals, no mocks: the
mechanisms of :mod:`dj_ops.runtime.lifetime` one by one (this file), then whole ``dj-process``
and ``dj-ops-caption`` jobs (``tests/test_job_kill.py``)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from dj_ops.backends.engine_watchdog import alive
from dj_ops.runtime.lifetime import PARENT_GONE_STATUS


def wait_until(condition, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def start(code: str, *args: str) -> tuple[subprocess.Popen, list[int]]:
    """A parent running ``code``; it prints its children's pids on one line, then waits."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    line = proc.stdout.readline()
    assert line, "the parent printed no pids"
    return proc, [int(p) for p in line.split()]


def kill_all(proc: subprocess.Popen, pids: list[int]) -> None:
    proc.kill()
    proc.wait()
    for pid in pids:
        subprocess.run(["kill", "-9", str(pid)], stderr=subprocess.DEVNULL, check=False)


CHILD_OF = """
import os, subprocess, sys
code = ("import sys, time; from dj_ops.runtime.lifetime import die_with_parent; "
        "print(die_with_parent(int(sys.argv[1]), death_signal=sys.argv[2] == 'signal'), "
        "flush=True); time.sleep(120)")
child = subprocess.Popen([sys.executable, "-c", code, str(os.getpid()), sys.argv[1]],
                         stdout=subprocess.PIPE, text=True)
mechanism = child.stdout.readline().strip()
print(child.pid, flush=True)
print(mechanism, flush=True)
sys.stdin.readline()
"""


@pytest.mark.parametrize("how", ["signal", "poll"])
def test_a_child_dies_with_its_killed_parent(how):
    """The kernel's parent-death signal, and the polling thread used where the forking thread
    may end first."""
    parent, [child] = start(CHILD_OF, how)
    try:
        assert parent.stdout.readline().strip() == {"signal": "death_signal", "poll": "poll"}[how]
        assert alive(child)
        parent.kill()  # SIGKILL: nothing runs in the parent
        parent.wait()
        assert wait_until(lambda: not alive(child))
    finally:
        kill_all(parent, [child])


def test_a_child_whose_parent_is_already_gone_ends_at_once():
    """The race: the parent ended before the child armed its signal (here: a pid that is not
    the child's parent)."""
    code = "from dj_ops.runtime.lifetime import die_with_parent; die_with_parent(1 << 30)"
    done = subprocess.run([sys.executable, "-c", code], timeout=120)
    assert done.returncode == PARENT_GONE_STATUS


POOL_PARENT = """
import sys, threading, time
import multiprocess, multiprocessing
from dj_ops.runtime.lifetime import children_end_with_this_process

def forever(started=None):
    if started is not None:
        started.set()  # after the fork hook ran in this child
    time.sleep(120)

def pid(_):
    import os
    return os.getpid()

if __name__ == "__main__":
    children_end_with_this_process()
    pool = multiprocess.Pool(2)  # as datasets forks Data-Juicer's np workers
    workers = sorted(set(pool.map(pid, range(8), chunksize=1)) | {p.pid for p in pool._pool})
    threaded = []
    def fork_and_end():  # a child forked by a thread that ends before the child
        started = multiprocessing.Event()
        child = multiprocessing.Process(target=forever, args=(started,), daemon=True)
        child.start()
        started.wait()
        threaded.append(child)
    thread = threading.Thread(target=fork_and_end)
    thread.start()
    thread.join()
    threaded[0].join(2.0)
    print(*workers, threaded[0].pid, flush=True)
    print("alive" if threaded[0].exitcode is None else "dead", flush=True)
    sys.stdin.readline()
"""


def test_multiprocessing_children_die_with_their_killed_parent():
    """Pool workers (``multiprocess``, as ``datasets`` starts them) and a child forked by a
    short-lived thread (which must outlive that thread) end when the parent is killed."""
    parent, children = start(POOL_PARENT)
    try:
        assert parent.stdout.readline().strip() == "alive"  # the forking thread's end: no kill
        assert len(children) == 3 and all(alive(pid) for pid in children)
        parent.kill()
        parent.wait()
        assert wait_until(lambda: not any(alive(pid) for pid in children))
    finally:
        kill_all(parent, children)


GRANDCHILD = """
import multiprocessing, sys, time
from dj_ops.runtime.lifetime import children_end_with_this_process

def grandchild():
    time.sleep(120)

def child(queue):  # as a Data-Juicer worker forking a vLLM engine core
    forked = multiprocessing.Process(target=grandchild)
    forked.start()
    queue.put((multiprocessing.current_process().pid, forked.pid))
    time.sleep(120)

if __name__ == "__main__":
    children_end_with_this_process()
    queue = multiprocessing.Queue()
    multiprocessing.Process(target=child, args=(queue,)).start()
    print(*queue.get(), flush=True)
    sys.stdin.readline()
"""


def test_a_child_of_a_child_dies_with_its_own_killed_parent():
    """The hook is inherited through forks and arms each generation against its own parent."""
    parent, [child, grandchild] = start(GRANDCHILD)
    try:
        subprocess.run(["kill", "-9", str(child)], check=True)
        assert wait_until(lambda: not alive(grandchild))
        assert parent.poll() is None
    finally:
        kill_all(parent, [child, grandchild])


MAIN = """
import ctypes, signal, sys
from dj_ops.runtime.lifetime import children_end_with_this_process, guard_op_process
children_end_with_this_process()
guarded = guard_op_process()
armed = ctypes.c_int(-1)
ctypes.CDLL(None).prctl(2, ctypes.byref(armed), 0, 0, 0)  # PR_GET_PDEATHSIG
print(guarded, armed.value, signal.getsignal(signal.SIGTERM) is signal.SIG_DFL,
      signal.getsignal(signal.SIGINT) is signal.default_int_handler)
"""


def test_the_jobs_main_process_is_never_armed():
    """A user's ``nohup dj-process ... &`` must outlive its shell: the main process keeps its
    own signals and gets no death signal."""
    out = subprocess.run([sys.executable, "-c", MAIN], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert out == ["False", "0", "True", "True"]


WORKER = """
import os, sys, time
import multiprocess
from dj_ops.runtime.lifetime import children_end_with_this_process, guard_op_process, results_kept
from dj_ops.store import ResultKeyer, SQLiteStore
from dj_ops.store.session import StoreSession
from dj_ops.captioning.requests import Candidate

def op_process(store_path, video, ready):
    guard_op_process()  # as the op's captioner does in a Data-Juicer worker
    session = StoreSession(SQLiteStore(store_path), ResultKeyer({"model": "m"}, {"run": 1}))
    slot = type("Slot", (), {"path": video, "prompt": "p"})()
    with results_kept(session):  # a batch: one result complete, not yet flushed
        session.add(slot, [Candidate("a caption", 3, False)], [0.0])
        ready.set()
        time.sleep(120)  # stands for the next micro-batch, stopped by SIGTERM

if __name__ == "__main__":
    children_end_with_this_process()
    ready = multiprocess.Event()
    worker = multiprocess.Process(target=op_process, args=(sys.argv[1], sys.argv[2], ready))
    worker.start()
    assert ready.wait(60), "the op process did not start"
    print(worker.pid, flush=True)
    sys.stdin.readline()
    worker.terminate()  # SIGTERM, as Data-Juicer's pool is terminated on a stop
    worker.join()
    print(worker.exitcode, flush=True)
"""


def test_sigterm_stops_an_op_process_cleanly_with_its_completed_results_stored(tmp_path):
    from dj_ops.store import SQLiteStore

    video = tmp_path / "v.mp4"
    video.write_bytes(b"not decoded here")
    store = tmp_path / "store.sqlite"
    parent, [worker] = start(WORKER, str(store), str(video))
    try:
        parent.stdin.write("\n")
        parent.stdin.flush()
        assert int(parent.stdout.readline()) == 128 + signal.SIGTERM  # JobStopped, quietly
        with SQLiteStore(store) as opened:
            assert opened.count() == 1 and opened.integrity() == "ok"
    finally:
        kill_all(parent, [worker])
