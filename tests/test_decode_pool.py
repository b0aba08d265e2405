"""The decoder registry and the decoding pool: lazy imports, hard timeouts on a decoder that
hangs, replacement of crashed workers, and the op's error records for both."""

from __future__ import annotations

import os
import re
import time

import numpy as np
import psutil
import pytest
from data_juicer.utils.constant import Fields

from dj_ops.captioning.records import META_KEY
from dj_ops.testing.clips import make_clip
from dj_ops.testing.decoders import misbehaving_decode, settings_reporting_decode
from dj_ops.video import FrameSettings, VideoError, decode_video
from dj_ops.video.decode_process import IN_PROCESS, DecodeProcess, current, decoding_as
from dj_ops.video.decoders import (
    DECODERS,
    InlineDecoder,
    open_decode_source,
    resolve_decoder,
)
from dj_ops.video.pool import DecodePool
from dj_ops.video.worker import DECODE_NICENESS
from tests.conftest import make_op, run_op

SETTINGS = FrameSettings(max_frames=4, max_pixels=112 * 112, min_pixels=28 * 28)
MISBEHAVING = ("dj_ops.testing.decoders:misbehaving_decode", "")


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pool_clips")
    for name in ("a", "b", "hang", "crash"):
        make_clip(folder / f"{name}.mp4", 1.0, 10, 64, 48)
    return folder


@pytest.fixture
def misbehaving(monkeypatch):
    """Register the test decoder that hangs on ``*hang*`` and crashes on ``*crash*`` files."""
    monkeypatch.setitem(DECODERS, "misbehaving", MISBEHAVING)
    return "misbehaving"


@pytest.fixture
def pool():
    pool = DecodePool(misbehaving_decode, workers=2, timeout_s=1.0)
    yield pool
    pool.close()


# --- registry ------------------------------------------------------------------------------


def test_registry_names_the_decoders():
    assert set(DECODERS) >= {"pyav", "torchcodec", "decord"}
    assert resolve_decoder("pyav") is decode_video


def test_unknown_decoder_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown decoder 'ffmpeg'; choose one of \['decord'"):
        resolve_decoder("ffmpeg")


def test_missing_package_names_the_pip_extra(monkeypatch, qwen3):
    monkeypatch.setitem(DECODERS, "ghost", ("dj_ops_no_such_package.reader:decode", "ghost"))
    message = "the 'ghost' decoder needs the package 'dj_ops_no_such_package': " \
              'pip install "dj-ops[ghost]"'
    with pytest.raises(ModuleNotFoundError, match=re.escape(message)):
        resolve_decoder("ghost")
    with pytest.raises(ModuleNotFoundError, match=re.escape(message)):
        make_op(qwen3, decoder="ghost")  # at construction, not in a worker


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"decoder": "ffmpeg"}, "unknown decoder 'ffmpeg'"),
        ({"decode_workers": -1}, "Input should be greater than or equal to 0"),
        ({"decode_timeout": 0}, "Input should be greater than 0"),
        ({"prefetch": -2}, "Input should be greater than or equal to 0"),
    ],
)
def test_invalid_decoding_parameters_fail_at_construction(qwen3, params, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make_op(qwen3, **params)


# --- the pool ------------------------------------------------------------------------------


def test_pool_gives_the_same_frames_as_decoding_in_process(pool, clip_dir):
    tickets = {name: pool.submit(str(clip_dir / f"{name}.mp4"), SETTINGS) for name in "ab"}
    for name, ticket in tickets.items():
        video = pool.result(ticket)
        direct = decode_video(str(clip_dir / f"{name}.mp4"), SETTINGS)
        assert video.frame_indices == direct.frame_indices
        assert np.array_equal(video.frames, direct.frames)


def test_hung_decoder_times_out_and_its_worker_is_replaced(pool, clip_dir):
    started = time.monotonic()
    hung = pool.submit(str(clip_dir / "hang.mp4"), SETTINGS)
    good = pool.submit(str(clip_dir / "a.mp4"), SETTINGS)
    assert isinstance(pool.result(good), type(decode_video(str(clip_dir / "a.mp4"), SETTINGS)))
    error = pool.result(hung)
    assert isinstance(error, VideoError) and error.kind == "timeout"
    assert "no result after 1.0 s" in error.message and error.path.endswith("hang.mp4")
    # Both workers are usable afterwards: the killed one was replaced.
    again = [pool.submit(str(clip_dir / f"{name}.mp4"), SETTINGS) for name in "abab"]
    assert all(not isinstance(pool.result(t), VideoError) for t in again)
    assert time.monotonic() - started < 30  # one timeout (1 s + grace) plus start-ups


def test_crashed_worker_is_a_decode_error_and_is_replaced(pool, clip_dir):
    crashed = pool.submit(str(clip_dir / "crash.mp4"), SETTINGS)
    error = pool.result(crashed)
    assert error.kind == "decode_error" and "died (exit code 3)" in error.message
    assert not isinstance(pool.result(pool.submit(str(clip_dir / "b.mp4"), SETTINGS)), VideoError)


def test_decoder_errors_come_back_as_video_errors(pool, tmp_path):
    missing = pool.result(pool.submit(str(tmp_path / "missing.mp4"), SETTINGS))
    assert isinstance(missing, VideoError) and missing.kind == "missing_file"


def test_discarded_tickets_leave_no_result_behind(pool, clip_dir):
    tickets = [pool.submit(str(clip_dir / f"{name}.mp4"), SETTINGS) for name in "abab"]
    pool.discard(tickets[1:])
    assert not isinstance(pool.result(tickets[0]), VideoError)
    deadline = time.monotonic() + 30
    while pool.held and time.monotonic() < deadline:  # the ones already running
        time.sleep(0.05)
    assert pool.held == 0


def test_close_ends_every_worker_even_a_hung_one(clip_dir):
    pool = DecodePool(misbehaving_decode, workers=2, timeout_s=None)
    pool.submit(str(clip_dir / "hang.mp4"), SETTINGS)
    pool.result(pool.submit(str(clip_dir / "a.mp4"), SETTINGS))
    processes = pool.processes
    pool.close()
    assert processes and all(p.poll() is not None for p in processes)
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit(str(clip_dir / "a.mp4"), SETTINGS)


def test_inline_decoder_has_the_pool_interface(clip_dir, tmp_path):
    inline = InlineDecoder(decode_video, timeout_s=None)
    good = inline.submit(str(clip_dir / "a.mp4"), SETTINGS)
    bad = inline.submit(str(tmp_path / "missing.mp4"), SETTINGS)
    assert inline.result(good).frame_indices == decode_video(str(clip_dir / "a.mp4"),
                                                            SETTINGS).frame_indices
    assert inline.result(bad).kind == "missing_file"


def test_each_decode_source_is_its_owners():
    first, second = open_decode_source("pyav", 1, 5.0), open_decode_source("pyav", 1, 5.0)
    inline = open_decode_source("pyav", 0, 5.0)
    try:
        assert first is not second and isinstance(inline, InlineDecoder)
        assert isinstance(first, DecodePool)
    finally:
        for source in (first, second, inline):
            source.close()


def decoding_workers() -> list[psutil.Process]:
    return [child for child in psutil.Process().children()
            if "dj_ops.video.worker" in " ".join(child.cmdline())]


def test_the_op_sets_up_its_decoding_processes_once_and_closing_ends_them(qwen3, clip_dir):
    before = decoding_workers()
    op = make_op(qwen3, decode_workers=2, keep_original_sample=False)
    samples = [{"text": "", "videos": [str(clip_dir / f"{name}.mp4")]} for name in "ab"]
    run_op(op, samples)
    started = [p for p in decoding_workers() if p not in before]
    run_op(op, samples)  # the same processes serve the next batches
    assert len(started) == 2 and [p for p in decoding_workers() if p not in before] == started
    op.close()
    assert all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in started)
    assert [p for p in decoding_workers() if p not in before] == []
    assert len(run_op(op, samples)) == 2  # a closed op sets up again on its next batch
    op.close()


# --- the op --------------------------------------------------------------------------------


def test_op_records_hang_and_crash_per_sample_and_captions_the_rest(qwen3, clip_dir,
                                                                     misbehaving):
    paths = [str(clip_dir / f"{name}.mp4") for name in ("a", "hang", "crash", "b")]
    samples = [{"text": "", "videos": [path]} for path in paths]
    op = make_op(qwen3, decoder=misbehaving, decode_workers=2, decode_timeout=1.0,
                 keep_original_sample=False, generation_batch_size=2)
    started = time.monotonic()
    rows = run_op(op, samples)
    assert time.monotonic() - started < 60
    records = [row[Fields.meta][META_KEY] for row in rows]
    assert [r["status"] for r in records] == ["captioned", "error", "error", "captioned"]
    kinds = [r["videos"][0]["error_kind"] for r in records]
    assert kinds == ["", "timeout", "decode_error", ""]


@pytest.mark.parametrize(("decoder", "module"), [("pyav", "av"), ("torchcodec", "torchcodec"),
                                                 ("decord", "decord")])
def test_op_with_each_decoder_and_cogvlm2_strategy(qwen3, videos, decoder, module):
    pytest.importorskip(module)
    op = make_op(qwen3, decoder=decoder, frame_strategy="chat", keep_original_sample=False)
    rows = run_op(op, [{"text": "", "videos": [path]} for path in videos[:2]])
    for row in rows:
        record = row[Fields.meta][META_KEY]
        assert record["status"] == "captioned"
        timestamps = record["videos"][0]["timestamps"]
        assert 2 <= len(timestamps) <= 24 and timestamps[0] == 0.0


def test_worker_killed_while_idle_is_replaced_without_losing_the_video(pool, clip_dir):
    assert not isinstance(pool.result(pool.submit(str(clip_dir / "a.mp4"), SETTINGS)),
                          VideoError)
    for process in pool.processes:
        process.kill()
        process.wait()
    again = [pool.submit(str(clip_dir / f"{name}.mp4"), SETTINGS) for name in "ab"]
    assert not any(isinstance(pool.result(ticket), VideoError) for ticket in again)


# --- threads -------------------------------------------------------------------------------


def test_pool_workers_decode_each_video_in_one_thread_at_lower_priority(clip_dir):
    assert current() == IN_PROCESS  # this process: the decoder's own choice, plain memory
    pool = DecodePool(settings_reporting_decode, workers=1, timeout_s=10.0)
    try:
        outcome = pool.result(pool.submit(str(clip_dir / "a.mp4"), FrameSettings()))
    finally:
        pool.close()
    nice = min(19, os.nice(0) + DECODE_NICENESS)  # 19: the lowest priority
    assert isinstance(outcome, VideoError)
    assert outcome.message == f"decode_threads=1 shared_frames=True nice={nice}"


def test_single_threaded_decoding_gives_the_same_frames(videos):
    settings = FrameSettings(max_frames=8, max_pixels=224 * 224, min_pixels=64 * 64)
    for path in videos[:3]:
        automatic = decode_video(path, settings)
        with decoding_as(DecodeProcess(threads=1)):
            single = decode_video(path, settings)
        assert single.frame_indices == automatic.frame_indices
        assert np.array_equal(single.frames, automatic.frames)


@pytest.mark.parametrize("threads", [-1, "two"])
def test_a_bad_thread_count_is_refused(threads):
    with pytest.raises(ValueError, match="threads must be a thread count"):
        DecodeProcess(threads=threads)


def test_decoding_as_restores_the_process_role_after_an_error():
    with pytest.raises(RuntimeError), decoding_as(DecodeProcess(threads=3)):
        assert current().threads == 3
        raise RuntimeError
    assert current() == IN_PROCESS
