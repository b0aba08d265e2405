"""Videos handed over in parts (a long video's windows) as each part is decoded, not at once.

A decoder may return an iterator instead of one outcome: its items are :class:`Part` objects
(each one window's frames or error) and, last, possibly a whole outcome. The decoding worker
(:mod:`dj_ops.video.worker`) sends each part as soon as it is decoded and, after a part with
``more`` set, waits for the op's go-ahead before decoding further: memory stays bounded by a
part (plus what the next parts share with it), whatever the number of parts; at the end it sends
:data:`STREAM_END`. The op reads the parts with ``next_part(ticket)`` of its decoding source.
"""

from __future__ import annotations


class Part:
    """An item of a stream: ``more`` says whether parts follow (the decoder then waits for the
    go-ahead)."""

    more: bool = False


class StreamEnd:
    """The message after a stream's last item."""

    def __repr__(self) -> str:
        return "STREAM_END"


STREAM_END = StreamEnd()


class PartStream:
    """The items of one submitted video, read from its source as they are iterated (the first
    one is waited for only then); ``close()`` gives the rest up."""

    def __init__(self, source, ticket: int):
        self.source, self.ticket, self.done = source, ticket, False

    def __iter__(self):
        while not self.done:
            item = self.source.next_part(self.ticket)
            self.done = not isinstance(item, Part)
            if not isinstance(item, StreamEnd):  # (a new object once pickled)
                yield item

    def close(self) -> None:
        if not self.done:
            self.done = True
            self.source.discard([self.ticket])


class StreamingSource:
    """A decoding source (a ``DecodePool`` or an ``InlineDecoder`` of a streaming decoder) whose
    ``result`` is the video's :class:`PartStream`, returned at once: the caller reads each
    video's parts in turn, however many videos it has asked for ahead."""

    def __init__(self, source):
        self.source = source

    def submit(self, path: str, settings) -> int:
        return self.source.submit(path, settings)

    def result(self, ticket: int) -> PartStream:
        return PartStream(self.source, ticket)

    def discard(self, tickets) -> None:
        self.source.discard(tickets)

    def close(self) -> None:
        self.source.close()

    @property
    def processes(self) -> list:
        return getattr(self.source, "processes", [])
