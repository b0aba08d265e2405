"""Decoded videos from a decoding worker process to the op, the frames through shared memory.

Pickled over the worker's socket, a 32-frame 448-pixel video (17 MB of frames) cost the worker
about 70 ms and the op about 50 ms of CPU time (py-spy, 2-core CPU machine): a fifth of all the
CPU time of captioning with the tiny model. Here the frames are in an anonymous shared-memory
file (Linux ``memfd_create``): the worker stacked them there (:mod:`dj_ops.video.shared_memory`),
or copies them there once; it sends the rest of the video pickled and the file's descriptor beside
it (``SCM_RIGHTS``); the op maps the file, so its frames are never copied. Where
``memfd_create`` is missing (not Linux), the frames are pickled as before.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from multiprocessing.connection import Connection

from dj_ops.video import shared_memory
from dj_ops.video.decode import DecodedVideo


@dataclass
class _SharedFrames:
    """A decoded video whose frames follow as a shared-memory file descriptor."""

    video: DecodedVideo  # with frames None
    shape: tuple[int, ...]
    dtype: str


def send_outcome(conn: Connection, outcome: object) -> None:
    """Send one message; a decoded video's frames go through shared memory when possible."""
    frames = getattr(outcome, "frames", None)
    if not (shared_memory.AVAILABLE and isinstance(outcome, DecodedVideo) and frames.nbytes):
        conn.send(outcome)
        return
    shared = frames
    if shared_memory.descriptor(frames) is None:  # not stacked there by the decoder
        shared = shared_memory.copy(frames)
    outcome.frames = None  # pickled without them (not a copy: a subclass stays itself)
    try:
        conn.send(_SharedFrames(outcome, shared.shape, shared.dtype.str))
    finally:
        outcome.frames = frames
    with socket.socket(fileno=os.dup(conn.fileno())) as sock:
        socket.send_fds(sock, [b"f"], [shared_memory.descriptor(shared)])


def recv_outcome(conn: Connection) -> object:
    """Receive one message sent by :func:`send_outcome`; frames from shared memory are mapped
    (read-write, private to this process now) rather than copied."""
    message = conn.recv()
    if not isinstance(message, _SharedFrames):
        return message
    with socket.socket(fileno=os.dup(conn.fileno())) as sock:
        _, fds, _, _ = socket.recv_fds(sock, 1, 1)
    if not fds:
        raise EOFError("the decoding worker closed the connection before sending the frames")
    message.video.frames = shared_memory.attach(fds[0], message.shape, message.dtype)
    return message.video
