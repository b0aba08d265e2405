"""One decoding worker process: both ends of it.

The worker is a fresh interpreter (``subprocess``, not ``multiprocessing``): ``fork`` is unsafe
in a process holding threads (torch, Ray, the pool's own), ``forkserver`` breaks in a process
forked from one that already started its server (Data-Juicer forks its ``num_proc`` workers),
and ``spawn`` re-runs the parent's main script (a few seconds under ``dj-process``, and an
error for a script without an ``if __name__ == "__main__"`` guard). A fresh interpreter with
the parent's ``sys.path`` starts in about 0.3 s and imports only the decoder's module. It talks
over a socket with :class:`multiprocessing.connection.Connection` (pickled messages):
decoder function in, ``None`` (ready) out, then ``(path, settings, timeout_s)`` in and
a :class:`DecodedVideo` (its frames through shared memory, see :mod:`dj_ops.video.transport`) or
:class:`VideoError` out per video, until ``None`` or end of file; a streaming decoder's parts
one message each, with the op's go-ahead in between (:mod:`dj_ops.video.streams`).
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection

from dj_ops.runtime.lifetime import die_with_parent
from dj_ops.video.decode import DecodedVideo
from dj_ops.video.decode_process import POOL_WORKER, decoding_as
from dj_ops.video.errors import DECODE_ERROR, VideoError
from dj_ops.video.settings import FrameSettings
from dj_ops.video.streams import STREAM_END, Part
from dj_ops.video.transport import send_outcome

STOP_WAIT_S = 2.0
# Workers run at a lower CPU priority than the op's process, which runs the model: where they
# share cores, the model is not slowed by decoding, and decoding takes every cycle the model
# leaves (it runs ahead by ``prefetch`` micro-batches, and the model waits when it falls behind,
# giving it the cores). On 2 cores (tiny model, caption_num 4) this captioned 120 videos in 39 s
# instead of 46 s. Nice 5 still gets a worker a quarter of a core beside a busy process on the
# same core, so ``decode_timeout`` keeps its meaning.
DECODE_NICENESS = 5
STARTUP_TIMEOUT_S = 120.0  # a worker not ready by then means a broken environment
# The command a worker runs: the parent's import path, then the loop below.
BOOTSTRAP = ("import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
             "from dj_ops.video.worker import serve; serve(int(sys.argv[2]), int(sys.argv[3]))")

Decoder = Callable[..., DecodedVideo]
Outcome = DecodedVideo | VideoError
# what a decoder may raise that costs its video only (an error record), not the job
DECODER_ERRORS = (VideoError, ValueError, OSError, RuntimeError, MemoryError)


def run_decoder(decoder: Decoder, path: str, settings: FrameSettings,
                timeout_s: float | None) -> Outcome | Iterator:
    """Decode one video; a failure becomes a :class:`VideoError` (``decode_error`` unless the
    decoder chose the kind). A streaming decoder's iterator is returned as it is (read it with
    :func:`next_item`)."""
    started = time.perf_counter()
    try:
        outcome = decoder(path, settings, timeout_s=timeout_s)
    except DECODER_ERRORS as error:
        return _as_error(error, path)
    if isinstance(outcome, DecodedVideo):  # for the run report's time split (dj_ops.report)
        outcome.decode_s = time.perf_counter() - started
    return outcome


def next_item(stream: Iterator, path: str) -> object:
    """A streaming decoder's next item, :data:`STREAM_END` after its last, or its failure as a
    :class:`VideoError` (the stream is then over)."""
    try:
        return next(stream, STREAM_END)
    except DECODER_ERRORS as error:
        return _as_error(error, path)


def _as_error(error: Exception, path: str) -> VideoError:
    if isinstance(error, VideoError):
        return error
    return VideoError(DECODE_ERROR, f"{type(error).__name__}: {error}", path)


def _send_stream(conn: Connection, stream: Iterator, path: str) -> None:
    """Send a streaming decoder's items as they come; after an item with ``more`` set, wait for
    the op's go-ahead (True) or stop (False) before decoding on."""
    while True:
        item = next_item(stream, path)
        send_outcome(conn, item)
        if not isinstance(item, Part):
            return
        if item.more and not conn.recv():
            stream.close()
            send_outcome(conn, STREAM_END)
            return


def serve(fd: int, parent_pid: int) -> None:
    """The worker's loop (child side), on the connected socket ``fd``. It ends with its parent
    ``parent_pid``, whatever ends it (the parent's end of the socket reaches end of file only
    once every process holding it has ended, and not while a video is decoding)."""
    die_with_parent(parent_pid)  # started by the pool's scheduler thread: dj_ops.runtime.lifetime
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    os.nice(DECODE_NICENESS)
    conn = Connection(fd)
    decoder = conn.recv()
    conn.send(None)
    # one thread per video (the pool decodes in parallel); frames stacked into shared memory
    # (handed over uncopied)
    with decoding_as(POOL_WORKER):
        while True:
            try:
                job = conn.recv()
            except (EOFError, OSError):
                return
            if job is None:
                return
            outcome = run_decoder(decoder, *job)
            if isinstance(outcome, Iterator):
                _send_stream(conn, outcome, job[0])
            else:
                send_outcome(conn, outcome)


class WorkerProcess:
    """The parent's handle on one worker process and the video it is decoding.

    :param decoder: a module-level function, sent to the worker by reference.
    """

    def __init__(self, decoder: Decoder):
        ours, theirs = socket.socketpair()
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-c", BOOTSTRAP, json.dumps(sys.path), str(theirs.fileno()),
                 str(os.getpid())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
            )
        self.conn = Connection(ours.detach())
        self.conn.send(decoder)
        self.ready = False  # until its first message: time limits count from then
        self.ticket: int | None = None
        self.waiting = False  # streaming: waiting for the op's go-ahead
        self.path = ""
        self.deadline = time.monotonic() + STARTUP_TIMEOUT_S

    @property
    def idle(self) -> bool:
        return self.ready and self.ticket is None

    @property
    def waited_on(self) -> bool:
        """Starting up or decoding: a message is due."""
        return not self.ready or self.ticket is not None

    @property
    def exitcode(self) -> int | None:
        return self.process.poll()

    def mark_ready(self) -> None:
        self.ready, self.deadline = True, math.inf

    def start(self, ticket: int, path: str, settings: FrameSettings,
              timeout_s: float | None, grace_s: float) -> None:
        """Send a video; it must come back within ``timeout_s + grace_s`` seconds."""
        self.conn.send((path, settings, timeout_s))
        self.ticket, self.path = ticket, path
        self.resume(timeout_s, grace_s)

    def wait_for_go_ahead(self) -> None:
        """It sent a streamed part and waits for the op to take it: no time limit meanwhile."""
        self.waiting, self.deadline = True, math.inf

    def resume(self, timeout_s: float | None, grace_s: float) -> None:
        """It was told to go on: its time limit runs from now."""
        self.waiting = False
        self.deadline = time.monotonic() + timeout_s + grace_s if timeout_s else math.inf

    def finish(self) -> int:
        """Mark the video done; returns its ticket."""
        ticket, self.ticket, self.deadline, self.waiting = self.ticket, None, math.inf, False
        return ticket

    def stop(self, kill: bool) -> None:
        """End the process: ask it to exit (or kill it), then reap it."""
        if not kill:
            try:
                self.conn.send(None)
            except OSError:
                kill = True
        if kill:
            self.process.kill()
        try:
            self.process.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.conn.close()
