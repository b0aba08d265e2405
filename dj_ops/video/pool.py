"""Decode videos in worker processes, each video under a hard time limit.

Decoders can hang or crash on some files (decord is known to), and a thread cannot be stopped, so
:class:`DecodePool` runs the decoder in worker processes (:mod:`dj_ops.video.worker`): a worker
past its video's deadline is killed and replaced, a worker that dies is replaced, and either
costs that one video a ``timeout`` / ``decode_error`` record, never the job. A scheduler thread
keeps every worker busy and reads results as soon as they are ready, so decoding goes on while
the caller's thread runs the model.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import deque
from multiprocessing import Pipe
from multiprocessing.connection import wait

from dj_ops.video.errors import DECODE_ERROR, TIMEOUT, VideoError
from dj_ops.video.settings import FrameSettings
from dj_ops.video.streams import Part
from dj_ops.video.transport import recv_outcome
from dj_ops.video.worker import Decoder, Outcome, WorkerProcess

# The decoder's own deadline check gets this long past the timeout to report before the kill.
KILL_GRACE_S = 1.0
# Worker starts that may fail in a row (a worker killed while starting) before the pool gives
# up: a broken environment fails the job instead of respawning processes forever.
MAX_START_FAILURES = 3


class DecodePool:
    """``workers`` decoding processes fed from one queue, with a hard per-video timeout.

    :param decoder: a module-level function ``(path, settings, *, timeout_s) -> DecodedVideo``
        (it is sent to the workers by reference).
    :param workers: number of worker processes (started when first needed).
    :param timeout_s: seconds one video may take (None: no limit).
    """

    def __init__(self, decoder: Decoder, workers: int, timeout_s: float | None):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.decoder, self.timeout_s = decoder, timeout_s
        self._workers: list[WorkerProcess | None] = [None] * workers
        self._queue: deque[tuple[int, str, FrameSettings]] = deque()
        self._results: dict[int, Outcome] = {}
        self._parts: dict[int, deque] = {}  # streamed parts not read yet, by ticket
        self._discarded: set[int] = set()
        self._tickets = itertools.count()
        self._cond = threading.Condition()
        self._wake_r, self._wake_w = Pipe(duplex=False)
        self._failure: BaseException | None = None
        self._start_failures = 0
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

    def ready(self, tickets: list[int], timeout_s: float) -> list[int]:
        """Those of ``tickets`` whose result can be collected now, in the order given, waiting
        up to ``timeout_s`` for one when none is."""
        with self._cond:
            self._cond.wait_for(lambda: any(t in self._results for t in tickets)
                                or self._failure or self._closed or not tickets, timeout_s)
            if not any(t in self._results for t in tickets):
                self._check_usable()
            return [t for t in tickets if t in self._results]

    def next_part(self, ticket: int):
        """A streamed video's next part (:mod:`dj_ops.video.streams`), waiting for it; then its
        last message (``STREAM_END``, or its error); for a video not streamed, its outcome.
        Taking a part with ``more`` set lets the worker decode the next one."""
        with self._cond:
            self._cond.wait_for(lambda: self._parts.get(ticket) or ticket in self._results
                                or self._failure or self._closed)
            if self._parts.get(ticket):
                part = self._parts[ticket].popleft()
                if part.more:
                    self._go_ahead(ticket, True)
                return part
            self._parts.pop(ticket, None)
            if ticket not in self._results:
                self._check_usable()
            return self._results.pop(ticket)

    def discard(self, tickets) -> None:
        """Forget ``tickets``: queued ones are dropped, running ones' results thrown away (a
        streamed one waiting for the go-ahead is told to stop)."""
        with self._cond:
            dropped = set(tickets)
            queued = {job[0] for job in self._queue}
            self._queue = deque(job for job in self._queue if job[0] not in dropped)
            for ticket in dropped - queued:
                self._parts.pop(ticket, None)
                if self._results.pop(ticket, None) is None:
                    self._discarded.add(ticket)  # running: its result is thrown away
                    self._go_ahead(ticket, False)

    @property
    def held(self) -> int:
        """Outcomes not collected yet: results waiting, and discarded videos still decoding."""
        with self._cond:
            return len(self._results) + len(self._discarded)

    @property
    def processes(self) -> list:
        """The ``Popen`` handles of the worker processes started so far (and not replaced)."""
        return [worker.process for worker in self._workers if worker is not None]

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
                    self._workers[slot] = WorkerProcess(self.decoder)
                elif worker.idle and self._queue:
                    job = self._queue.popleft()
                    try:
                        worker.start(*job, self.timeout_s, KILL_GRACE_S)
                    except OSError:  # it died while idle: replace it, keep the job
                        self._queue.appendleft(job)
                        self._replace(worker, kill=True)

    def _go_ahead(self, ticket: int, go: bool) -> None:
        """Tell the worker streaming ``ticket`` and waiting to decode on (True) or stop (False);
        its time limit runs again from now (under the lock)."""
        worker = next((w for w in self._workers if w is not None and w.ticket == ticket
                       and w.waiting), None)
        if worker is None:
            return
        try:
            worker.conn.send(go)
        except OSError:  # it died: the scheduler replaces it
            return
        worker.resume(self.timeout_s, KILL_GRACE_S)
        self._wake()  # its deadline changed

    def _take_part(self, worker: WorkerProcess, part) -> None:
        """A streamed part arrived: keep it for ``next_part``; a worker that sent a part with
        ``more`` waits (no deadline) until it is taken."""
        with self._cond:
            if part.more:
                worker.wait_for_go_ahead()
            if worker.ticket in self._discarded:
                self._go_ahead(worker.ticket, False)
                return
            self._parts.setdefault(worker.ticket, deque()).append(part)
            self._cond.notify_all()

    def _collect(self, worker: WorkerProcess) -> None:
        """Read a worker's message: ready, or an outcome; a worker that died is replaced."""
        try:
            outcome = recv_outcome(worker.conn)
        except (EOFError, OSError) as error:
            self._replace(worker, kill=True)
            code = worker.exitcode
            if not worker.ready:
                self._start_failures += 1
                if self._start_failures >= MAX_START_FAILURES:
                    message = (f"{self._start_failures} decoder processes in a row failed to "
                               f"start (last exit code {code})")
                    raise RuntimeError(message) from error
                return  # restarted when next needed
            outcome = VideoError(DECODE_ERROR, f"the decoder process died (exit code {code})",
                                 worker.path)
        if not worker.ready:
            worker.mark_ready()
            self._start_failures = 0
            return
        if isinstance(outcome, Part):
            self._take_part(worker, outcome)
            return
        self._deliver(worker.finish(), outcome)

    def _expire(self) -> None:
        """Kill and replace every worker past its deadline; its video times out."""
        now = time.monotonic()
        for worker in self._workers:
            if worker is None or worker.deadline > now:
                continue
            if not worker.ready:
                raise RuntimeError("a decoder process did not start in time")
            message = f"no result after {self.timeout_s} s; the decoder process was killed"
            self._replace(worker, kill=True)
            self._deliver(worker.finish(), VideoError(TIMEOUT, message, worker.path))

    def _replace(self, worker: WorkerProcess, kill: bool) -> None:
        worker.stop(kill=kill)
        self._workers[self._workers.index(worker)] = None  # restarted when next needed

    def _deliver(self, ticket: int, outcome: Outcome) -> None:
        with self._cond:
            if ticket in self._discarded:
                self._discarded.discard(ticket)
            else:
                self._results[ticket] = outcome
                self._cond.notify_all()
