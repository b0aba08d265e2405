"""Skip decoding the unwanted frames that no other frame references (H.264 / HEVC B-frames), in
the same single forward pass over the file that decodes the wanted ones.

FFmpeg skips such a frame when ``skip_frame`` is ``NONREF`` as its packet is sent, so the choice
is made per packet, in decoding order, before the packet's frame exists. It needs the frame's
index: its pts's rank among all the packets' pts, which with B-frames is not the packet's
position in decoding order. :func:`ranked_frames` reads a few packets ahead of the decoder
(:data:`LOOKAHEAD_PACKETS`, more than any encoder puts between a frame and the B-frames shown
before it), so that every pts below the packet's is known when it is sent, and numbers the frames
that come out by the same ranks. What it relies on is checked as it goes: should a packet come
later than the look-ahead allows, a frame come out of order, or the decoder drop a frame it was
asked to decode, the rest is decoded from a second opening of the file without skipping,
numbered by count as a plain decode numbers it (:func:`ranked_frames`'s ``again``).
"""

from __future__ import annotations

import logging
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable, Iterator
from itertools import chain

log = logging.getLogger(__name__)

# Decoders that skip a frame no other frame references when asked to (FFmpeg's skip_frame
# NONREF) and still decode every frame that is referenced, so the frames kept come out the same.
SKIP_NONREF_CODECS = frozenset({"h264", "hevc"})
# Packets read ahead of the one sent to the decoder. x264 and x265 put at most 16 B-frames
# between two reference frames, so a frame's packet comes at most 17 packets before the last of
# the frames shown before it; more costs only memory (compressed packets: about 20 MB for a
# 100 Mb/s stream at 30 fps).
LOOKAHEAD_PACKETS = 48


def can_skip(stream) -> bool:
    """Whether ``stream``'s decoder can skip unreferenced frames and it has B-frames (headers)."""
    context = stream.codec_context
    return context.name in SKIP_NONREF_CODECS and bool(context.has_b_frames)


class Unranked(Exception):
    """The frames cannot be numbered by pts rank from here on (the message says why)."""


class PtsRanks:
    """The pts of the packets read so far, sorted: a frame's index is its pts's rank, less the
    frames the decoder dropped before its first frame (undecodable leading frames: a plain
    decode drops them too). Records which packets were sent to the decoder to be decoded
    (``True``) or to be skipped if unreferenced (``False``), and checks the frames that come out
    against them: in rank order, none missing that was to be decoded. Pure: no PyAV."""

    def __init__(self) -> None:
        self.seen: list[int] = []  # sorted
        self.sent: dict[int, bool] = {}  # pts -> decode (True) or skip if unreferenced
        self.sent_max: int | None = None  # highest pts sent to the decoder
        self.out = -1  # rank of the last frame out
        self.base = 0  # frames dropped by the decoder before its first frame

    def add(self, pts: int | None) -> None:
        """A packet read ahead (decoding order)."""
        if pts is None:
            raise Unranked("a packet without pts")
        if self.sent_max is not None and pts < self.sent_max:
            raise Unranked(f"pts {pts} read after pts {self.sent_max} was sent to the decoder "
                           "(frames reordered over more than the look-ahead)")
        at = bisect_left(self.seen, pts)
        if at < len(self.seen) and self.seen[at] == pts:
            raise Unranked(f"two packets with pts {pts}")
        insort(self.seen, pts, lo=at)

    def send(self, pts: int, wanted: set[int]) -> bool:
        """Record the packet at ``pts`` as sent; True: decode it (its frame is wanted, or no
        frame came out yet: the count starts at the decoder's first frame)."""
        decode = self.out < 0 or bisect_left(self.seen, pts) - self.base in wanted
        self.sent[pts] = decode
        self.sent_max = pts if self.sent_max is None else max(self.sent_max, pts)
        return decode

    def frame_out(self, pts: int | None) -> int:
        """The index of a frame that came out of the decoder, after checking that every frame
        ranked between the previous one and it was sent to be skipped (so it was skipped)."""
        at = -1 if pts is None else bisect_left(self.seen, pts)
        if at < 0 or at >= len(self.seen) or self.seen[at] != pts:
            raise Unranked(f"a frame with an unknown pts ({pts})")
        if at <= self.out:
            raise Unranked(f"frame {at} came out after frame {self.out}")
        first = self.out < 0
        for missing in range(self.out + 1, at):
            decode = self.sent.pop(self.seen[missing], None)
            if decode is None or (decode and not first):
                why = "was not sent yet" if decode is None else "was to be decoded"
                raise Unranked(f"frame {missing} is missing before frame {at} (it {why})")
        if first:
            self.base = at
        self.sent.pop(pts, None)
        self.out = at
        return at - self.base


def ranked_frames(container, stream, wanted: set[int],
                  again: Callable[[], Iterator[tuple[int, object]]], *,
                  lookahead: int = LOOKAHEAD_PACKETS) -> Iterator[tuple[int, object]]:
    """``(index, frame)`` of the frames decoded from the start of ``container``'s ``stream``,
    numbered as a plain decode numbers them (by count), decoding an unwanted frame only when
    another frame references it: each packet is sent once ``lookahead`` packets after it were
    read (see the module's docstring). Packets the container marks for discarding (edit lists)
    are decoded and not counted, as FFmpeg drops their frames.

    Should the ranks fail (:class:`Unranked`) before the first frame came out, when every packet
    sent was sent to be decoded, the decoding goes on without skipping, counting the frames;
    after that, the frames past the last one handed out come from ``again()`` (a plain decode of
    a new opening: the file is read a second time)."""
    ranks, queue, out, handed = PtsRanks(), deque(), deque(), -1
    packets = container.demux(stream)
    try:
        for packet in chain(packets, (None,)):  # None: the end (after the flush packet)
            if packet is not None:
                queue.append(packet)
                if packet.size and not packet.is_discard:
                    ranks.add(packet.pts)
            ahead = lookahead if packet is not None and packet.size else 0
            while len(queue) > ahead:
                out.extend(_send(queue.popleft(), ranks, wanted, stream))
                while out:
                    handed = ranks.frame_out(out[0].pts)
                    yield handed, out.popleft()
    except Unranked as why:
        stream.codec_context.skip_frame = "DEFAULT"
        if handed < 0:  # every packet sent was to be decoded: go on as a plain decode
            log.debug("not skipping frames: %s", why)
            rest = (frame for packet in chain(queue, packets) for frame in packet.decode())
            yield from enumerate(chain(out, rest))
            return
        log.warning("decoding again without skipping frames, after frame %d: %s", handed, why)
        yield from ((index, frame) for index, frame in again() if index > handed)
    finally:
        stream.codec_context.skip_frame = "DEFAULT"


def _send(packet, ranks: PtsRanks, wanted: set[int], stream) -> list:
    """Send one packet, to be skipped if its frame is unwanted and unreferenced; the frames
    that come out."""
    decode = not packet.size or packet.is_discard or ranks.send(packet.pts, wanted)
    stream.codec_context.skip_frame = "DEFAULT" if decode else "NONREF"
    return packet.decode()


def skipping_frames(container, stream, index_of: Callable[[int | None], int],
                    wanted: set[int] | None) -> Iterator:
    """Decoded frames from the container's position. With ``wanted`` (frames numbered by pts:
    ``index_of``, from every packet's pts scanned beforehand or from the frame rate), a packet
    whose frame is not wanted is decoded only when other frames reference it. On streams with
    B-frames that is 20-40% less decoding for the same wanted frames (``pyav_all_frames`` in
    bench/results/decode.md)."""
    if wanted is None:
        yield from container.decode(stream)
        return
    context = stream.codec_context
    try:
        for packet in container.demux(stream):
            # the last (flush) packet has no pts: it only drains frames already decoded
            keep = packet.pts is None or index_of(packet.pts) in wanted
            context.skip_frame = "DEFAULT" if keep else "NONREF"
            yield from packet.decode()
    finally:
        context.skip_frame = "DEFAULT"
