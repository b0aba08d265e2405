"""Progress per video while the op works, not per Data-Juicer batch.

Data-Juicer's bar advances when a whole batch ends (128 rows by default), so a job showed 0%
until it ended. Here each op process counts its videos as they finish (captioned, failed, reused
from the result store) in a :class:`VideoProgress`, and:

- in a job run by ``dj-process`` or ``dj-ops-caption`` (the op's ``run``), sends its counts to
  the job's main process, where one :class:`ProgressBoard` **aggregates every process** (``np``
  > 1) and shows one bar on a terminal (tqdm), or one line every :data:`LINE_EVERY_S` seconds in
  a log: videos done / total, failed, reused, videos/s and ETA;
- elsewhere (Ray actors, a bare ``Dataset.map(op.process)``), logs its own line every
  :data:`LINE_EVERY_S` seconds (done, failed, reused, videos/s; no total: it does not know it).

The counts travel as datagrams on a Unix socket: cumulative counts per process, so a message
lost (the board's queue full for a second) is made good by the next one, and a sender never
waits on a board that is gone.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass

from loguru import logger

CAPTIONED, FAILED, REUSED = "captioned", "failed", "reused"
LINE_EVERY_S = 30.0  # a periodic progress line in logs at most this often
SEND_TIMEOUT_S = 1.0  # a full board queue delays a sender at most this long
MAX_MESSAGE = 512


@dataclass(frozen=True)
class Counts:
    """One process's videos so far (``batches``: Data-Juicer batches it finished)."""

    pid: int = 0
    captioned: int = 0
    failed: int = 0
    reused: int = 0
    batches: int = 0

    @property
    def done(self) -> int:
        return self.captioned + self.failed + self.reused


def progress_line(counts: Counts, seconds: float, total: int | None = None) -> str:
    """``37/100 videos (failed 2, reused 10), 1.80 videos/s, ETA 34 s``: the rate counts the
    videos generated or failed here (reused ones cost nothing); no total: no ETA.

    >>> progress_line(Counts(captioned=9, failed=1, reused=10), 5.0, 40)
    '20/40 videos (failed 1, reused 10), 2.00 videos/s, ETA 10 s'
    """
    worked = counts.captioned + counts.failed
    rate = worked / seconds if seconds > 0 else 0.0
    done = f"{counts.done}/{total}" if total is not None else f"{counts.done}"
    line = f"{done} videos (failed {counts.failed}, reused {counts.reused}), {rate:.2f} videos/s"
    if total is not None and counts.done < total and rate > 0:
        line += f", ETA {round((total - counts.done) / rate)} s"
    return line


def count_videos(dataset, video_key: str) -> int | None:
    """Videos listed in a Hugging Face ``Dataset``'s ``video_key`` column, read from its Arrow
    column without loading the rows (None when it has no such column)."""
    if video_key not in getattr(dataset, "column_names", ()):
        return None
    import pyarrow.compute as pc

    lengths = pc.list_value_length(dataset.data.column(video_key))
    return int(pc.sum(lengths).as_py() or 0)


def videos_in_batch(samples: dict[str, list], video_key: str) -> int:
    """Videos listed in a Data-Juicer batch (dict of lists)."""
    return sum(len(videos or []) for videos in samples.get(video_key, []))


def _address() -> str:
    """A fresh socket address: ``@name`` in Linux's abstract namespace (no file to clean up),
    else a path."""
    name = f"dj_ops-progress-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    return "@" + name if sys.platform.startswith("linux") else os.path.join("/tmp", name)


def _socket_address(address: str) -> str:
    """What ``bind``/``sendto`` take: an abstract address starts with a NUL byte."""
    return "\0" + address[1:] if address.startswith("@") else address


class VideoProgress:
    """Counts one op process's videos as they finish, and reports them.

    :param name: the op's name, in log lines.
    :param board: the address of the job's :class:`ProgressBoard` (None: log a line here every
        ``every_s`` seconds instead).
    """

    def __init__(self, name: str, board: str | None = None, every_s: float = LINE_EVERY_S,
                 clock: Callable[[], float] = time.monotonic):
        self.name, self.board, self.every_s, self.clock = name, board, every_s, clock
        self.counts = Counts(pid=os.getpid())
        self._batch = 0  # videos of the current batch counted so far
        self._started = self._last_line = clock()
        self._socket: socket.socket | None = None

    def video(self, outcome: str) -> None:
        """One video finished: :data:`CAPTIONED`, :data:`FAILED` or :data:`REUSED`."""
        field = {CAPTIONED: "captioned", FAILED: "failed", REUSED: "reused"}[outcome]
        self.counts = _add(self.counts, **{field: 1})
        self._batch += 1
        self._report()

    def batch_done(self, videos: int) -> None:
        """A Data-Juicer batch of ``videos`` videos ended: those it did not report (a sample
        refused before captioning, such as an invalid prompt) failed."""
        self.counts = _add(self.counts, failed=max(0, videos - self._batch), batches=1)
        self._batch = 0
        self._report()

    def close(self) -> None:
        """The last report; a logging process logs its totals."""
        if self.board is None and self.counts.done:
            self._log()
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _report(self) -> None:
        if self.board is not None:
            self._send()
        elif self.clock() - self._last_line >= self.every_s:
            self._log()

    def _log(self) -> None:
        self._last_line = self.clock()
        line = progress_line(self.counts, self._last_line - self._started)
        logger.bind(progress=True).info(f"{self.name} progress in process {os.getpid()}: {line}")

    def _send(self) -> None:
        if self._socket is None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._socket.settimeout(SEND_TIMEOUT_S)
        try:
            self._socket.sendto(json.dumps(asdict(self.counts)).encode(),
                                _socket_address(self.board))
        except OSError:  # the board is gone or busy: the next message carries these counts
            pass


def _add(counts: Counts, **more: int) -> Counts:
    values = asdict(counts)
    for key, n in more.items():
        values[key] += n
    return Counts(**values)


class ProgressBoard:
    """In the job's main process: every op process's counts, summed and shown.

    :param name: the op's name, in the bar and the lines.
    :param total: videos in the job (None: unknown).
    :param on_update: called with each process's :class:`Counts` as they arrive (tests).
    :param terminal: show a bar (default: when the process's real stderr is a terminal;
        ``dj-process`` replaces ``sys.stderr`` with its logger); else log a line every
        ``every_s`` seconds and one at the end.
    """

    def __init__(self, name: str, total: int | None, *, every_s: float = LINE_EVERY_S,
                 on_update: Callable[[Counts], None] | None = None,
                 terminal: bool | None = None, clock: Callable[[], float] = time.monotonic):
        self.name, self.total, self.every_s, self.clock = name, total, every_s, clock
        self.on_update = on_update
        self.by_process: dict[int, Counts] = {}
        self.address = _address()
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(_socket_address(self.address))
        self._socket.settimeout(0.5)
        self._started = self._last_line = clock()
        self._closed = threading.Event()
        if terminal is None:
            terminal = sys.__stderr__ is not None and sys.__stderr__.isatty()
        self._bar = self._open_bar() if terminal else None
        self._thread = threading.Thread(target=self._receive, daemon=True,
                                        name="dj_ops-progress")
        self._thread.start()

    @property
    def counts(self) -> Counts:
        """The sum over every process."""
        values = [asdict(c) for c in self.by_process.values()]
        return Counts(**{k: sum(v[k] for v in values) for k in asdict(Counts()) if k != "pid"})

    def line(self) -> str:
        return progress_line(self.counts, self.clock() - self._started, self.total)

    def close(self) -> None:
        """Stop receiving; the final line (or the bar's last state)."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._thread.join()
        self._socket.close()
        if not self.address.startswith("@"):
            os.unlink(self.address)
        if self._bar is not None:
            self._bar.close()
        elif self.by_process:
            self._log()

    def _open_bar(self):
        from tqdm import tqdm

        return tqdm(total=self.total, desc=f"{self.name} videos", unit="video", leave=True,
                    dynamic_ncols=True, file=sys.__stderr__)

    def _receive(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._socket.recv(MAX_MESSAGE)
            except TimeoutError:  # nothing finished lately: the periodic line still comes
                if self._bar is None and self.by_process and (
                        self.clock() - self._last_line >= self.every_s):
                    self._log()
                continue
            except OSError:
                return
            counts = Counts(**json.loads(data))
            self.by_process[counts.pid] = counts
            if self.on_update is not None:
                self.on_update(counts)
            self._show()

    def _show(self) -> None:
        if self._bar is not None:
            total = self.counts
            self._bar.n = total.done
            self._bar.set_postfix(failed=total.failed, reused=total.reused, refresh=False)
            self._bar.refresh()
        elif self.clock() - self._last_line >= self.every_s:
            self._log()

    def _log(self) -> None:
        self._last_line = self.clock()
        processes = len(self.by_process)
        logger.bind(progress=True).info(
            f"{self.name} progress: {self.line()} ({processes} "
            f"process{'es' if processes != 1 else ''})")
