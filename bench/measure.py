"""Measuring helpers shared by the benchmark scripts: wall time, peak memory, the machine's
description, summaries, and the JSON results under ``bench/results/``."""

from __future__ import annotations

import functools
import json
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# A ratio measured while the machine's 1-minute load average rose above this many times its
# cores is not publishable: other processes then take cores from one side more than from the
# other (the same comparison of the op and the baseline read 20x at load 6 and 5.6x at load 1 on
# 2 cores). The benchmark's own processes count: the op with its two decoders is about 2.4.
QUIET_LOAD_PER_CORE = 1.5


@contextmanager
def stopwatch(wall: dict[str, float], cpu: dict[str, float], key: str):
    """Add the wall time and the process's CPU time (all threads) of the ``with`` block to
    ``wall[key]`` and ``cpu[key]``. On a shared machine CPU time varies less than wall time."""
    start, start_cpu = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        wall[key] = wall.get(key, 0.0) + time.perf_counter() - start
        cpu[key] = cpu.get(key, 0.0) + time.process_time() - start_cpu


def time_calls(owner: Any, names: Sequence[str], spent: list[float]) -> None:
    """Add the time of every call of ``owner``'s functions ``names`` (methods of a class, or
    functions of a module) to ``spent[0]``: what a part of the op costs, timed around it."""
    for name in names:
        original = getattr(owner, name)

        @functools.wraps(original)
        def wrapper(*args, _original=original, **kwargs):
            start = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - start

        setattr(owner, name, wrapper)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rate(count: float, seconds: float) -> float:
    """``count / seconds``, 0 for an empty interval."""
    return count / seconds if seconds > 0 else 0.0


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of ``values`` (per-round ratios: how noisy the machine was).

    >>> spread([3.0, 1.0, 2.0])
    {'median': 2.0, 'min': 1.0, 'max': 3.0}
    """
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def load_check(loads: Sequence[float], cores: int | None = None) -> dict[str, Any]:
    """The 1-minute load averages sampled during a measurement (mean and highest) beside the
    machine's cores, and whether a ratio measured then may be published.

    >>> load_check([1.0, 2.5], cores=2)["publishable"], load_check([6.0], cores=2)["publishable"]
    (True, False)
    """
    cores = cores or len(os.sched_getaffinity(0))
    limit = QUIET_LOAD_PER_CORE * cores
    highest = max(loads)
    return {"load_avg_1m_mean": round(statistics.mean(loads), 2),
            "load_avg_1m_max": round(highest, 2), "cores": cores,
            "quiet_load_limit": limit, "publishable": highest <= limit}


def load_now() -> float:
    """The machine's 1-minute load average now."""
    return os.getloadavg()[0]


def publish_note(check: dict[str, Any]) -> str:
    """How a ratio is to be read, by its :func:`load_check`.

    >>> publish_note(load_check([6.0], cores=2))
    'NOT PUBLISHABLE: load average 6.0 on 2 cores (quiet: at most 3.0)'
    >>> publish_note(load_check([1.0, 2.0], cores=2))
    'load average 1.5 (at most 2.0) on 2 cores'
    """
    mean, highest = check["load_avg_1m_mean"], check["load_avg_1m_max"]
    load = f"load average {mean}" + (f" (at most {highest})" if highest != mean else "")
    if check["publishable"]:
        return f"{load} on {check['cores']} cores"
    return f"NOT PUBLISHABLE: {load} on {check['cores']} cores (quiet: at most " \
           f"{check['quiet_load_limit']})"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch
    import transformers

    return {
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def save(name: str, payload: dict[str, Any], folder: Path = RESULTS_DIR) -> Path:
    """Write ``payload`` (plus the machine description) to ``folder/name.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    data = {"machine": machine(), **payload}
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path


def load(name: str, folder: Path = RESULTS_DIR) -> dict[str, Any] | None:
    """The saved results ``name``, or None when that benchmark has not been run."""
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def markdown_table(rows: list[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """A Markdown table of ``rows``; ``columns`` are (key, header) pairs.

    >>> print(markdown_table([{"a": 1, "b": 2.5}], [("a", "A"), ("b", "B")]))
    | A | B |
    |---|---|
    | 1 | 2.5 |
    """
    lines = ["| " + " | ".join(h for _, h in columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(k)) for k, _ in columns) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return "" if value is None else str(value)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()`` and its wall time in seconds."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start
