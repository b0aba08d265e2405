"""The engine watchdog kills an engine's processes once their owner is gone, even when the
owner ends without any clean-up (``os._exit``), and leaves them alone while it lives."""

from __future__ import annotations

import subprocess
import sys
import time

from dj_ops.backends.engine_watchdog import alive

OWNER = """
import os, subprocess, sys, time
from dj_ops.backends.engine_watchdog import watch
engine = subprocess.Popen(["sleep", "60"])
watch([engine.pid])
print(engine.pid, flush=True)
time.sleep(float(sys.argv[1]))
os._exit(0)
"""


def _wait_until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_the_engine_dies_with_its_owner_not_before():
    owner = subprocess.Popen([sys.executable, "-c", OWNER, "2.0"], stdout=subprocess.PIPE,
                             text=True)
    engine = int(owner.stdout.readline())
    assert alive(engine)
    time.sleep(1.0)
    assert alive(engine)  # the owner still runs
    owner.wait(timeout=30)
    assert _wait_until(lambda: not alive(engine), timeout_s=10.0)


def test_the_watchdog_ends_when_the_engine_ends_first():
    engine = subprocess.Popen(["sleep", "0.5"])
    from dj_ops.backends.engine_watchdog import watch

    watchdog = watch([engine.pid])
    engine.wait(timeout=10)
    assert watchdog.wait(timeout=10) == 0
    assert watch([]) is None
