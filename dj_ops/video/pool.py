"""Decode videos in worker processes, each video under a hard time limit.

Decoders can hang or crash on some files (decord is known to), and a thread cannot be stopped, so
:class:`DecodePool` runs the decoder in worker processes: a worker past its video's deadline is
killed and replaced, a worker that dies is replaced, and either costs that one video a
``timeout`` / ``decode_error`` record, never the job. A scheduler thread keeps every worker busy
and reads results as soon as they are ready, so decoding goes on while the caller's thread runs
the model. :class:`InlineDecoder` is the same interface without processes (``workers=0``).

Workers are started with ``spawn``: ``fork`` is unsafe in a process holding threads (torch,
Ray, this pool's own), and ``forkserver`` breaks in a process forked from one that already
started its server (Data-Juicer forks its ``num_proc`` workers). A spawned worker starts in
about 0.3 s; under ``dj-process`` it first re-imports the command's module (about 2-3 s, once
per worker lifetime).
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import wait

from dj_ops.video.decode import DecodedVideo
from dj_ops.video.errors import DECODE_ERROR, TIMEOUT, VideoError
from dj_ops.video.settings import FrameSettings

START_METHOD = "spawn"
# The decoder's own deadline check gets this long past the timeout to report before the kill.
KILL_GRACE_S = 1.0
STOP_JOIN_S = 2.0
STARTUP_TIMEOUT_S = 120.0  # a worker not ready by then means a broken environment

Decoder = Callable[..., DecodedVideo]
Outcome = DecodedVideo | VideoError


def run_decoder(decoder: Decoder, path: str, settings: FrameSettings,
                timeout_s: float | None) -> Outcome:
    """Decode one video; a failure becomes a :class:`VideoError` (``decode_error`` unless the
    decoder chose the kind)."""
    try:
        return decoder(path, settings, timeout_s=timeout_s)
    except VideoError as error:
        return error
    except (ValueError, OSError, RuntimeError, MemoryError) as error:
        return VideoError(DECODE_ERROR, f"{type(error).__name__}: {error}", path)


def _worker_main(conn, decoder: Decoder) -> None:
    """A worker process: say it is ready, then decode each ``(path, settings, timeout_s)``
    received and send the outcome back; stop on ``None`` or when the pool's end closes."""
    conn.send(None)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        conn.send(run_decoder(decoder, *job))


class _Worker:
    """One worker process and the job it is running."""

    def __init__(self, context, decoder: Decoder):
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_worker_main, args=(child, decoder), daemon=True, name="dj_ops-decoder"
        )
        self.process.start()
        child.close()
        self.ready = False  # until its first message: time limits count from then
        self.ticket: int | None = None
        self.path = ""
        self.deadline = time.monotonic() + STARTUP_TIMEOUT_S

    @property
    def idle(self) -> bool:
        return self.ready and self.ticket is None

    @property
    def waited_on(self) -> bool:
        """Starting up or decoding: a message is due."""
        return not self.ready or self.ticket is not None

    def start(self, ticket: int, path: str, settings: FrameSettings, timeout_s) -> None:
        self.conn.send((path, settings, timeout_s))
        self.ticket, self.path = ticket, path
        self.deadline = time.monotonic() + timeout_s + KILL_GRACE_S if timeout_s else math.inf

    def finish(self) -> int:
        """Mark the job done; returns its ticket."""
        ticket, self.ticket, self.deadline = self.ticket, None, math.inf
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
        self.process.join(STOP_JOIN_S)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


class DecodePool:
    """``workers`` decoding processes fed from one queue, with a hard per-video timeout.

    :param decoder: a module-level function ``(path, settings, *, timeout_s) -> DecodedVideo``
        (it is sent to the workers by reference).
    :param workers: number of worker processes (started when first needed).
    :param timeout_s: seconds one video may take (None: no limit).
    """

    def __init__(self, decoder: Decoder, workers: int, timeout_s: float | None,
                 start_method: str = START_METHOD):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.decoder, self.timeout_s = decoder, timeout_s
        self._context = multiprocessing.get_context(start_method)
        self._workers: list[_Worker | None] = [None] * workers
        self._queue: deque[tuple[int, str, FrameSettings]] = deque()
        self._results: dict[int, Outcome] = {}
        self._discarded: set[int] = set()
        self._tickets = itertools.count()
        self._cond = threading.Condition()
        self._wake_r, self._wake_w = self._context.Pipe(duplex=False)
        self._failure: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="dj_ops-decode")
        self._thread.start()

    def submit(self, path: str, settings: FrameSettings) -> int:
        """Queue ``path`` for decoding; returns the ticket to collect it with."""
        with self._cond:
            self._check_usable()
            ticket = next(self._tickets)
            self._queue.append((ticket, path, settings))
        self._wake()
        return ticket

    def result(self, ticket: int) -> Outcome:
        """The decoded video or its error, waiting for it."""
        with self._cond:
            self._cond.wait_for(lambda: ticket in self._results or self._failure or self._closed)
            if ticket not in self._results:
                self._check_usable()
            return self._results.pop(ticket)

    def discard(self, tickets) -> None:
        """Forget ``tickets``: queued ones are dropped, running ones' results thrown away."""
        with self._cond:
            dropped = set(tickets)
            queued = {job[0] for job in self._queue}
            self._queue = deque(job for job in self._queue if job[0] not in dropped)
            for ticket in dropped - queued:
                if self._results.pop(ticket, None) is None:
                    self._discarded.add(ticket)  # running: its result is thrown away

    def close(self) -> None:
        """Stop the scheduler and the workers."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._wake()
        self._thread.join()
        for worker in filter(None, self._workers):
            worker.stop(kill=worker.ticket is not None)
        self._wake_r.close()
        self._wake_w.close()

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise RuntimeError(f"the decode pool failed: {self._failure!r}") from self._failure
        if self._closed:
            raise RuntimeError("the decode pool is closed")

    def _wake(self) -> None:
        try:
            self._wake_w.send_bytes(b"")
        except OSError:  # closed: the scheduler is gone already
            pass

    def _run(self) -> None:
        """Scheduler thread: dispatch, collect, enforce deadlines, until closed."""
        try:
            while not self._closed:
                self._dispatch()
                busy = [w for w in self._workers if w is not None and w.waited_on]
                deadline = min((w.deadline for w in busy), default=math.inf)
                timeout = None if deadline == math.inf else max(0.0, deadline - time.monotonic())
                for ready in wait([self._wake_r] + [w.conn for w in busy], timeout):
                    if ready is self._wake_r:
                        self._wake_r.recv_bytes()
                    else:
                        self._collect(next(w for w in busy if w.conn is ready))
                self._expire()
        except BaseException as error:  # noqa: BLE001 - reported to every waiting caller
            with self._cond:
                self._failure = error
                self._cond.notify_all()

    def _dispatch(self) -> None:
        """Give queued jobs to idle workers; start all workers once there is work."""
        with self._cond:
            if not self._queue:
                return
            for slot, worker in enumerate(self._workers):
                if worker is None:
                    self._workers[slot] = _Worker(self._context, self.decoder)
                elif worker.idle and self._queue:
                    ticket, path, settings = self._queue.popleft()
                    worker.start(ticket, path, settings, self.timeout_s)

    def _collect(self, worker: _Worker) -> None:
        """Read a worker's message: ready, or an outcome; a worker that died is replaced."""
        try:
            outcome = worker.conn.recv()
        except (EOFError, OSError) as error:
            worker.process.join(STOP_JOIN_S)
            code = worker.process.exitcode
            if not worker.ready:
                message = f"a decoder process failed to start (exit code {code})"
                raise RuntimeError(message) from error
            outcome = VideoError(DECODE_ERROR, f"the decoder process died (exit code {code})",
                                 worker.path)
            self._replace(worker, kill=True)
        if not worker.ready:
            worker.ready, worker.deadline = True, math.inf
            return
        self._deliver(worker.finish(), outcome)

    def _expire(self) -> None:
        """Kill and replace every worker past its deadline; its video times out."""
        now = time.monotonic()
        for worker in self._workers:
            if worker is None or worker.deadline > now:
                continue
            if not worker.ready:
                raise RuntimeError(f"a decoder process did not start in {STARTUP_TIMEOUT_S} s")
            message = f"no result after {self.timeout_s} s; the decoder process was killed"
            self._replace(worker, kill=True)
            self._deliver(worker.finish(), VideoError(TIMEOUT, message, worker.path))

    def _replace(self, worker: _Worker, kill: bool) -> None:
        worker.stop(kill=kill)
        self._workers[self._workers.index(worker)] = None  # restarted when next needed

    def _deliver(self, ticket: int, outcome: Outcome) -> None:
        with self._cond:
            if ticket in self._discarded:
                self._discarded.discard(ticket)
            else:
                self._results[ticket] = outcome
                self._cond.notify_all()
