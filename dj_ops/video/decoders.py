"""The decoders by name, and where they run: worker processes (:class:`DecodePool`, the
default) or the calling thread (:class:`InlineDecoder`, ``workers=0``).

A decoder is a module-level function ``(path, settings, *, timeout_s=None) -> DecodedVideo``
raising :class:`VideoError`; it returns the frames picked by ``settings.strategy``, resized,
with their metadata. Decoders are registered as lazy ``module:function`` paths so that decord
or torchcodec load only when chosen. Whoever opens a source closes it (the op's per-process
:class:`~dj_ops.ops.captioner.Captioner`).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

from dj_ops.lazy_import import load_entry
from dj_ops.video.pool import DecodePool
from dj_ops.video.settings import FrameSettings
from dj_ops.video.streams import Part
from dj_ops.video.worker import Decoder, Outcome, next_item, run_decoder

# name -> ("module:function", pip extra that provides its optional dependency or "")
DECODERS: dict[str, tuple[str, str]] = {
    "pyav": ("dj_ops.video.decode:decode_video", ""),
    "torchcodec": ("dj_ops.video.decode_torchcodec:decode_video", "torchcodec"),
    "decord": ("dj_ops.video.decode_decord:decode_video", "decord"),
}
DEFAULT_DECODER = "pyav"


def resolve_decoder(name: str) -> Decoder:
    """Import the decoder registered as ``name``.

    :raises ValueError: for an unknown name (listing the registered ones).
    :raises ModuleNotFoundError: when its optional package is missing, naming the pip extra.
    """
    if name not in DECODERS:
        raise ValueError(f"unknown decoder {name!r}; choose one of {sorted(DECODERS)}")
    path, extra = DECODERS[name]
    return load_entry(path, what=f"the {name!r} decoder", extra=extra)


def available_cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def cores_per_process(processes: int) -> int:
    """This machine's cores shared among ``processes`` op processes (at least one): the op's
    default number of decoding processes."""
    return max(1, available_cores() // max(1, processes))


class InlineDecoder:
    """The pool's interface, decoding in the calling thread when a result is asked for: no
    processes, no overlap with generation, only the decoder's own timeout check."""

    def __init__(self, decoder: Decoder, timeout_s: float | None):
        self.decoder, self.timeout_s = decoder, timeout_s
        self._jobs: dict[int, tuple[str, FrameSettings]] = {}
        self._streams: dict[int, tuple[Iterator, str]] = {}  # streaming decoders' iterators
        self._tickets = itertools.count()

    def submit(self, path: str, settings: FrameSettings) -> int:
        """Remember ``path``; returns the ticket to collect it with."""
        ticket = next(self._tickets)
        self._jobs[ticket] = (path, settings)
        return ticket

    def result(self, ticket: int) -> Outcome:
        """Decode the ticket's video now."""
        return run_decoder(self.decoder, *self._jobs.pop(ticket), self.timeout_s)

    def next_part(self, ticket: int):
        """A streamed video's next part, decoded now (see ``DecodePool.next_part``)."""
        if ticket not in self._streams:
            path = self._jobs[ticket][0]
            outcome = self.result(ticket)
            if not isinstance(outcome, Iterator):
                return outcome
            self._streams[ticket] = (outcome, path)
        item = next_item(*self._streams[ticket])
        if not isinstance(item, Part):
            del self._streams[ticket]
        return item

    def ready(self, tickets: list[int], timeout_s: float) -> list[int]:
        """The first ticket: it is decoded, here, when its result is asked for."""
        return list(tickets[:1])

    def discard(self, tickets) -> None:
        """Forget ``tickets``."""
        for ticket in tickets:
            self._jobs.pop(ticket, None)
            stream = self._streams.pop(ticket, None)
            if stream is not None:
                stream[0].close()

    def close(self) -> None:
        self.discard(list(self._streams))
        self._jobs.clear()


def open_decode_source(decoder: str, workers: int,
                       timeout_s: float | None) -> DecodePool | InlineDecoder:
    """Where the videos of ``decoder`` are decoded: a pool of ``workers`` processes, or the
    calling thread for ``workers=0``. The caller owns it and closes it (``close()``)."""
    return open_source(resolve_decoder(decoder), workers, timeout_s)


def open_source(function: Decoder, workers: int,
                timeout_s: float | None) -> DecodePool | InlineDecoder:
    """:func:`open_decode_source` of a decoder function (e.g. the windows' one)."""
    if workers:
        return DecodePool(function, workers, timeout_s)
    return InlineDecoder(function, timeout_s)
