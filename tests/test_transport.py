"""Decoded videos from worker to op: frames through shared memory (Linux), every other message
pickled; the same video arrives either way, and no descriptor or mapping leaks."""

from __future__ import annotations

import mmap
import os
import socket
import threading
from multiprocessing.connection import Connection

import numpy as np
import pytest

from dj_ops.testing.clips import sample_videos
from dj_ops.video import FrameSettings, VideoError, decode_video, shared_memory, transport
from dj_ops.video.decode_process import POOL_WORKER, decoding_as
from dj_ops.video.pool import DecodePool
from dj_ops.video.transport import recv_outcome, send_outcome

SETTINGS = FrameSettings(size_factor=32, max_frames=8)
linux_only = pytest.mark.skipif(not shared_memory.AVAILABLE, reason="needs memfd_create")


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    a, b = Connection(ours.detach()), Connection(theirs.detach())
    yield a, b
    a.close()
    b.close()


def sent_and_received(sender, receiver, message):
    """``recv_outcome`` of ``send_outcome(message)``, sent from a thread (a message larger than
    the socket's buffer blocks its sender until read)."""
    thread = threading.Thread(target=send_outcome, args=(sender, message))
    thread.start()
    try:
        return recv_outcome(receiver)
    finally:
        thread.join()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def mapped(array: np.ndarray) -> bool:
    base = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None) if not isinstance(base, memoryview) else base.obj
    return isinstance(base, mmap.mmap)


@linux_only
def test_frames_arrive_through_shared_memory(pair):
    sender, receiver = pair
    video = decode_video(str(sample_videos()[0]), SETTINGS)
    before = open_fds()
    got = sent_and_received(sender, receiver, video)
    assert mapped(got.frames) and not mapped(video.frames)
    assert np.array_equal(got.frames, video.frames) and got.frames.flags.writeable
    assert got.frame_indices == video.frame_indices and got.timestamps == video.timestamps
    assert video.frames is not None  # the sender's video is left whole
    del got
    assert open_fds() == before  # nothing left open once the frames are freed


@pytest.mark.parametrize("message", [None, VideoError("decode_error", "bad", "x.mp4"), ("a", 1)])
def test_other_messages_are_pickled(pair, message):
    sender, receiver = pair
    assert repr(sent_and_received(sender, receiver, message)) == repr(message)


def test_without_shared_memory_frames_are_pickled(pair, monkeypatch):
    monkeypatch.setattr(shared_memory, "AVAILABLE", False)
    sender, receiver = pair
    video = decode_video(str(sample_videos()[0]), SETTINGS)
    got = sent_and_received(sender, receiver, video)
    assert not mapped(got.frames) and np.array_equal(got.frames, video.frames)


@linux_only
def test_a_peer_gone_before_the_frames_is_end_of_file(pair):
    sender, receiver = pair
    video = decode_video(str(sample_videos()[0]), SETTINGS)
    shape, dtype = video.frames.shape, video.frames.dtype.str
    video.frames = None
    sender.send(transport._SharedFrames(video, shape, dtype))
    sender.close()
    with pytest.raises((EOFError, OSError)):
        recv_outcome(receiver)


@linux_only
def test_decoders_in_a_worker_stack_frames_into_shared_memory(monkeypatch):
    path = str(sample_videos()[0])
    inline = decode_video(path, SETTINGS)
    assert shared_memory.descriptor(inline.frames) is None  # the op's own process: plain
    before = open_fds()
    with decoding_as(POOL_WORKER):
        worker = decode_video(path, SETTINGS)
    assert shared_memory.descriptor(worker.frames) is not None
    assert np.array_equal(worker.frames, inline.frames)
    assert shared_memory.descriptor(worker.frames[1:]) is None  # only a whole file is sent
    del worker
    assert open_fds() == before


@linux_only
def test_frames_stacked_in_shared_memory_are_sent_without_a_copy(pair, monkeypatch):
    sender, receiver = pair
    with decoding_as(POOL_WORKER):
        video = decode_video(str(sample_videos()[0]), SETTINGS)
    copies = []
    monkeypatch.setattr(shared_memory, "copy", lambda array: copies.append(array))
    got = sent_and_received(sender, receiver, video)
    assert copies == [] and np.array_equal(got.frames, video.frames)


def test_the_pool_delivers_the_same_frames_as_decoding_inline():
    paths = [str(p) for p in sample_videos()]
    pool = DecodePool(decode_video, 2, timeout_s=60)
    try:
        got = [pool.result(t) for t in [pool.submit(p, SETTINGS) for p in paths]]
    finally:
        pool.close()
    for path, video in zip(paths, got, strict=True):
        inline = decode_video(path, SETTINGS)
        assert np.array_equal(video.frames, inline.frames)
        assert video.frame_indices == inline.frame_indices
        assert mapped(video.frames) == shared_memory.AVAILABLE
