"""The engine watchdog kills an engine's processes once their owner is gone, however the owner
ends (SIGKILL included), also while the engine is still starting; it leaves them alone while the
owner lives, leaves the owner's other processes alone, and ends by itself when the engine ends
first. Real processes (``sleep`` stands for the engine), no mocks."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from dj_ops.backends.engine_watchdog import alive

OWNER = """
import os, subprocess, sys
from dj_ops.backends.engine_watchdog import watch_engine
mode = sys.argv[1]
before = subprocess.Popen(["sleep", "120"])  # the owner's, from before the engine
try:
    with watch_engine(report=subprocess.PIPE) as watchdog:
        engine = subprocess.Popen(["sleep", "120"])
        print(before.pid, engine.pid, watchdog.process.pid, flush=True)
        while str(engine.pid) not in watchdog.process.stdout.readline().split():
            pass  # until the watchdog follows it
        if mode == "up":
            watchdog.engine_started([engine.pid])
        if mode == "fails":
            raise RuntimeError("the engine did not start")
        print("ready", flush=True)
        sys.stdin.readline()
except RuntimeError:
    print("failed", flush=True)
    sys.stdin.readline()
os._exit(0)
"""


def wait_until(condition, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture
def owner(request):
    """The owner in a mode; yields (process, before, engine, watchdog pids); kills what is
    left."""
    proc = subprocess.Popen([sys.executable, "-c", OWNER, request.param], text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert proc.stdout.readline().strip() in ("ready", "failed")
    yield proc, *pids
    proc.kill()
    proc.wait()
    for pid in pids:
        subprocess.run(["kill", "-9", str(pid)], stderr=subprocess.DEVNULL, check=False)


@pytest.mark.parametrize("owner", ["starting"], indirect=True)
def test_an_engine_still_starting_dies_with_its_killed_owner(owner):
    proc, before, engine, watchdog = owner
    proc.kill()  # SIGKILL: no clean-up of any kind
    proc.wait()
    assert wait_until(lambda: not alive(engine))
    assert wait_until(lambda: not alive(watchdog))
    assert alive(before)  # not the engine's: the watchdog leaves it alone


@pytest.mark.parametrize("owner", ["up"], indirect=True)
def test_a_running_engine_lives_with_its_owner_and_dies_with_it(owner):
    proc, before, engine, watchdog = owner
    assert alive(engine) and alive(watchdog)
    proc.stdin.write("\n")  # the owner ends with os._exit: no finalizer runs
    proc.stdin.flush()
    proc.wait(timeout=30)
    assert wait_until(lambda: not alive(engine))
    assert alive(before)


@pytest.mark.parametrize("owner", ["up"], indirect=True)
def test_the_watchdog_ends_when_the_engine_ends_first(owner):
    proc, _, engine, watchdog = owner
    subprocess.run(["kill", "-9", str(engine)], check=True)
    assert wait_until(lambda: not alive(watchdog))
    assert proc.poll() is None


@pytest.mark.parametrize("owner", ["fails"], indirect=True)
def test_a_failed_start_kills_what_it_left_and_the_watchdog_ends(owner):
    proc, before, engine, watchdog = owner
    assert wait_until(lambda: not alive(engine))
    assert wait_until(lambda: not alive(watchdog))
    assert proc.poll() is None and alive(before)
