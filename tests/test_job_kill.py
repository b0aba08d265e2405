"""Whole jobs stopped the way a scheduler, the OOM killer or a person stops them.

``kill -9`` of the main process of ``dj-process`` (``np: 2``) or ``dj-ops-caption`` mid-run,
once the result store holds a result: every process of the job (Data-Juicer's workers and its
Manager, the decoding workers) is gone within 10 s and the store does not change any more.
SIGTERM: the job stops cleanly, its completed results stored, and its last lines say what the
store holds. Slow (a few real jobs): CI runs them with ``-m slow``."""

from __future__ import annotations

import os
import signal
import time

import pytest

from dj_ops.store import SQLiteStore
from tests.job_support import (
    VIDEOS,
    dj_ops_caption,
    dj_process,
    dj_process_recipe,
    make_clips,
    stored,
    wait_gone,
)

pytestmark = pytest.mark.slow


def killed_when_stored(job, store) -> int:
    """SIGKILL the job's main process once its store holds a result; the count then."""
    job.follow_until(lambda: stored(store) >= 1)
    os.kill(job.proc.pid, signal.SIGKILL)
    job.proc.wait()
    return stored(store)


def assert_nothing_left_and_store_still(job, store, at_kill: int) -> None:
    left = wait_gone(job, timeout_s=10.0)
    assert not left, [(p.pid, p.cmdline()[:3]) for p in left]
    final = stored(store)
    assert at_kill <= final < VIDEOS  # nobody finished the job after the kill
    with SQLiteStore(store) as opened:
        assert opened.integrity() == "ok"
    time.sleep(1.0)  # not a synchronisation: nothing is left that could write
    assert stored(store) == final


def test_kill_9_of_dj_process_ends_every_process_of_the_job(tmp_path, qwen3):
    store = tmp_path / "store.sqlite"
    recipe = dj_process_recipe(tmp_path, make_clips(tmp_path / "clips"), qwen3, np=2,
                               result_store=str(store))
    job = dj_process(recipe, tmp_path / "job.log")
    try:
        at_kill = killed_when_stored(job, store)
        assert {"python", "decode_worker"} <= job.kinds()  # Data-Juicer's workers, decoders
        assert_nothing_left_and_store_still(job, store, at_kill)
    finally:
        job.kill_everything()


def test_kill_9_of_dj_ops_caption_ends_every_process_of_the_job(tmp_path, qwen3):
    folder = tmp_path / "clips"
    make_clips(folder)
    output = tmp_path / "captions.jsonl"
    store = tmp_path / "captions.jsonl.store.sqlite"  # its default store
    job = dj_ops_caption(folder, output, qwen3, tmp_path / "job.log", "--num-proc", "2")
    try:
        at_kill = killed_when_stored(job, store)
        assert {"python", "decode_worker"} <= job.kinds()
        assert_nothing_left_and_store_still(job, store, at_kill)
        assert not output.exists()
    finally:
        job.kill_everything()


def test_sigterm_stops_dj_process_cleanly_and_says_what_was_stored(tmp_path, qwen3):
    store = tmp_path / "store.sqlite"
    recipe = dj_process_recipe(tmp_path, make_clips(tmp_path / "clips"), qwen3, np=2,
                               result_store=str(store))
    job = dj_process(recipe, tmp_path / "job.log")
    try:
        job.follow_until(lambda: stored(store) >= 1)
        at_signal = stored(store)
        job.proc.send_signal(signal.SIGTERM)  # to the main process alone, as `kill PID` does
        assert job.proc.wait(timeout=600) == 128 + signal.SIGTERM
        assert not wait_gone(job, timeout_s=10.0)
        final = stored(store)
        assert at_signal <= final < VIDEOS
        lines = job.output().splitlines()
        end = lines[lines.index("== vlm_video_captioning_mapper ==") + 1:]
        assert end[0].startswith("stopped by SIGTERM after ")
        assert f"the result store {store} holds {final} results ({final} written by this run)" \
            in end[0]
        assert end[1].startswith("run the same command again to resume")
        with SQLiteStore(store) as opened:
            assert opened.integrity() == "ok"
    finally:
        job.kill_everything()
