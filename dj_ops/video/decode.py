"""Decode the sampled frames of one local video with PyAV: count, sample, then reach only
the wanted frames, by decoding from the start or by seeking (see ``choose_decode_method``),
and convert them to RGB at the ``smart_resize`` size.

The file is opened once and read once, skipping unwanted unreferenced frames as it goes
(:mod:`dj_ops.video.skipping`), when its container stores the frame count and the rate is
constant (MP4, MOV, AVI). Otherwise (Matroska/WebM, MPEG-TS, raw streams; a variable rate) the
sampler needs every frame's time before the decode: the packets are scanned first, which reads
the file a second time (``_scanned_info``)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from functools import partial
from itertools import chain
from typing import NamedTuple

import av
import numpy as np

from dj_ops.video import shared_memory
from dj_ops.video.budget import budgeted_indices
from dj_ops.video.decode_process import current as decode_process
from dj_ops.video.errors import (
    DECODE_ERROR,
    NOT_A_VIDEO,
    TIMEOUT,
    VideoError,
    check_local_path,
    describe_error,
    looks_like_video_container,
    open_error,
)
from dj_ops.video.sampling import (
    choose_decode_method,
    frame_pixel_budget,
    keyframe_interval,
    seek_threshold,
    smart_resize,
)
from dj_ops.video.settings import FrameSettings
from dj_ops.video.skipping import can_skip, ranked_frames, skipping_frames
from dj_ops.video.windows import PartsPlan, frames_to_decode

# (total_frames, fps, timestamps or None, duration, size) -> the parts of the video (e.g. its
# windows: their frames, the size to resize to, their budget records) when it has several,
# else None (decoded as usual); ``size()`` is the stream's (height, width).
FramePlan = Callable[[int, float, "list[float] | None", float, Callable], "PartsPlan | None"]

VIDEO_BACKEND = "pyav"
DECODE_METHODS = ("auto", "sequential", "seek")
RESIZE_INTERPOLATION = "BICUBIC"
# Wanted frames this close to the end may be missing (containers sometimes count a frame
# or two that never decodes); a larger shortfall means a truncated or corrupt stream.
EOF_SLACK_FRAMES = 3
# base_rate and average_rate further apart than this: treat the rate as variable.
VFR_RATE_TOLERANCE = 0.01


@dataclass
class DecodedVideo:
    """Sampled frames of one video and what a video processor needs to know about them."""

    path: str
    frames: np.ndarray  # (T, H, W, 3) uint8, resized, T a multiple of temporal_factor
    frame_indices: list[int]
    timestamps: list[float]  # seconds from the start of the stream, one per frame
    source_fps: float
    total_frames: int
    duration: float
    width: int
    height: int
    rotation: int = 0  # counter-clockwise degrees from the display matrix, already applied
    method: str = "sequential"  # how the frames were reached
    decoder: str = VIDEO_BACKEND  # the registered decoder that produced the frames
    # how the frames were fitted to a token budget (video/budget.py; empty: no budget)
    frame_budget: dict = field(default_factory=dict)
    decode_s: float = -1.0  # wall seconds the decoder took (set by worker.run_decoder)

    def transformers_metadata(self) -> dict:
        """The ``video_metadata`` that transformers' video processors take with frames."""
        return {
            "total_num_frames": self.total_frames,
            "fps": self.source_fps,
            "duration": self.duration,
            "frames_indices": list(self.frame_indices),
            "width": self.width,
            "height": self.height,
            "video_backend": self.decoder,
        }


@dataclass
class _StreamInfo:
    """What the container says about its first video stream."""

    total_frames: int
    fps: float
    duration: float
    start_pts: int
    time_base: Fraction
    pts_list: list[int] | None  # every frame's pts, when the packets were scanned
    keyframe_pts: list[int] | None = None  # when the packets were scanned
    pts_index: dict[int, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.pts_index = {pts: i for i, pts in enumerate(self.pts_list or [])}

    def timestamps(self) -> list[float] | None:
        """Per-frame times in seconds when scanned (variable rate), else None."""
        if self.pts_list is None:
            return None
        return [self.seconds(pts) for pts in self.pts_list]

    def seconds(self, pts: int) -> float:
        """Time of ``pts`` in seconds from the start of the stream."""
        return float((pts - self.start_pts) * self.time_base)

    def pts_of(self, index: int) -> int:
        """Presentation timestamp of frame ``index``."""
        if self.pts_list is not None:
            return self.pts_list[index]
        return self.start_pts + round(index / self.fps / self.time_base)

    def index_of(self, pts: int | None) -> int:
        """Frame index of a decoded frame's ``pts`` (-1 when unknown)."""
        if self.pts_list is not None or pts is None:
            return self.pts_index.get(pts, -1)
        return round(self.seconds(pts) * self.fps)


def _open(path: str) -> av.container.InputContainer:
    """Open ``path`` for reading, mapping failures to ``not_a_video`` / ``decode_error``."""
    try:
        return av.open(path, metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise open_error(path, exc) from exc


class _PacketScan(NamedTuple):
    count: int  # packets holding a frame
    pts_list: list[int] | None  # sorted; None when the packets carry none (raw streams)
    keyframes: list[int]  # the keyframes' pts


def _scan_packets(path: str) -> _PacketScan:
    """What the video packets say, by demuxing without decoding, in a container of its own
    so the caller's stays at the start (rewinding is unreliable in MPEG-TS and raw streams).
    This reads the whole file once more than the decode does."""
    with av.open(path, metadata_errors="ignore") as scan:
        packets = [(p.pts, p.is_keyframe) for p in scan.demux(scan.streams.video[0]) if p.size]
    pts = [pts for pts, _ in packets]
    keyframes = [pts for pts, key in packets if key and pts is not None]
    return _PacketScan(len(pts), None if None in pts else sorted(pts), keyframes)


def _video_stream(container: av.container.InputContainer):
    """The first video stream, set up to decode on this decoding process's threads."""
    stream = container.streams.video[0]
    threads = decode_process().threads
    stream.thread_type = "NONE" if threads == 1 else "AUTO"
    if threads > 1:
        stream.thread_count = threads
    return stream


def _probe(container: av.container.InputContainer, path: str) -> tuple[object, _StreamInfo]:
    """First video stream and its frame count, rate, duration (scanned when needed)."""
    if not container.streams.video:
        if not container.streams and looks_like_video_container(path):  # index destroyed
            raise VideoError(DECODE_ERROR, "the container lists no streams (corrupt index?)")
        raise VideoError(NOT_A_VIDEO, "the file has no video stream")
    stream = _video_stream(container)
    time_base = stream.time_base or Fraction(1, av.time_base)
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    variable = bool(rate and stream.base_rate) and (
        abs(float(stream.base_rate / rate) - 1) > VFR_RATE_TOLERANCE
    )
    if not stream.frames or not rate or variable:
        return stream, _scanned_info(path, stream, time_base)
    if stream.duration:
        duration = float(stream.duration * time_base)
    else:
        duration = (container.duration or 0) / av.time_base or stream.frames / float(rate)
    start_pts = stream.start_time or 0
    return stream, _StreamInfo(stream.frames, float(rate), duration, start_pts, time_base, None)


def _scanned_info(path: str, stream, time_base: Fraction) -> _StreamInfo:
    """Frame count, mean rate and duration from the packets (variable frame rate, or a
    container that does not store the frame count): the sampler needs them before the
    decode, so the file is read twice."""
    count, pts_list, keyframes = _scan_packets(path)
    if not count:
        raise VideoError(DECODE_ERROR, "the video stream holds no frames")
    span = float((pts_list[-1] - pts_list[0]) * time_base) if pts_list else 0.0
    if count > 1 and span > 0:
        rate = (count - 1) / span
    else:
        rate = float(stream.guessed_rate or stream.average_rate or 1)
    if pts_list is None:  # raw stream: no timestamps at all
        return _StreamInfo(count, rate, count / rate, 0, time_base, None, keyframes)
    first = pts_list[0]
    start_pts = first if stream.start_time is None else min(stream.start_time, first)
    duration = float((first - start_pts) * time_base) + span + 1.0 / rate
    return _StreamInfo(count, rate, duration, start_pts, time_base, pts_list, keyframes)


def _keyframe_seconds(stream, info: _StreamInfo) -> list[float]:
    """Keyframe times in seconds: from the scan, else from the container's index (whose
    timestamps may be decode times: shifted, but spaced alike)."""
    times = info.keyframe_pts
    if times is None:
        times = [entry.timestamp for entry in stream.index_entries if entry.is_keyframe]
    return [float(t * info.time_base) for t in times]


def _seeking_frames(
    container, stream, info: _StreamInfo, wanted: list[int], max_ahead: int, interval: int,
    keep: set[int] | None,
) -> Iterator[tuple[int, object]]:
    """Frames around each wanted index: seek to the keyframe before a target more than
    ``max_ahead`` frames past the decoder's position, else decode on to it. ``keep``: see
    ``skipping_frames``."""
    decoded = partial(skipping_frames, container, stream, info.index_of, keep)
    position, frames = 0, decoded()
    for target in wanted:
        if target - position > max_ahead:
            frames = _seek_before(container, stream, info, target, interval, decoded)
        for frame in frames:
            index = info.index_of(frame.pts)
            position = index + 1
            yield index, frame
            if index >= target:
                break
        else:
            return  # the stream ended before the target: later targets are beyond it too


def _seek_before(container, stream, info: _StreamInfo, target: int, interval: int,
                 decoded: Callable[[], Iterator]) -> Iterator:
    """Decoded frames from a keyframe at or before frame ``target``. Some containers
    (MPEG-TS) land on the keyframe after the time asked for: then seek earlier by a
    doubling multiple of the keyframe interval, and at last from the start."""
    back = 0
    while back < target:
        offset = info.pts_of(target - back)
        container.seek(offset, stream=stream, backward=True, any_frame=False)
        frames = decoded()
        first = next(frames, None)
        if first is not None and info.index_of(first.pts) <= target:
            return chain([first], frames)
        back = 2 * back or max(1, interval)
    container.seek(0)  # not to start_time: MPEG-TS would land on the second keyframe
    return decoded()


def _counted_frames(path: str) -> Iterator[tuple[int, object]]:
    """Every frame of ``path`` numbered by count, from a new opening (see ``ranked_frames``)."""
    with _open(path) as container:
        yield from enumerate(container.decode(_video_stream(container)))


def _numbered(frames: Iterator, info: _StreamInfo) -> Iterator[tuple[int, object]]:
    """Frames from the start with their index: by pts when every pts is known
    (scanned), else by count."""
    if info.pts_list is None:
        return enumerate(frames)
    return ((info.index_of(frame.pts), frame) for frame in frames)


def _frame_to_array(frame, settings: FrameSettings, max_pixels: int) -> np.ndarray:
    """RGB array of ``frame`` at the smart_resize size, turned upright per its rotation."""
    quarter_turns = round(frame.rotation / 90) % 4
    sideways = quarter_turns % 2 == 1
    height, width = (frame.width, frame.height) if sideways else (frame.height, frame.width)
    out_h, out_w = smart_resize(
        height, width, settings.size_factor, settings.min_pixels, max_pixels
    )
    coded_w, coded_h = (out_h, out_w) if sideways else (out_w, out_h)
    rgb = frame.reformat(
        width=coded_w, height=coded_h, format="rgb24", interpolation=RESIZE_INTERPOLATION
    ).to_ndarray()
    return np.ascontiguousarray(np.rot90(rgb, k=quarter_turns)) if quarter_turns else rgb


def _collect(frames, wanted, convert, info, deadline) -> tuple[dict[int, tuple], int]:
    """Keep the first frame seen at each wanted index; stop once all are kept. Also returns
    the highest index decoded (how far the stream could be read)."""
    wanted_set, kept, last = set(wanted), {}, -1
    for index, frame in frames:
        last = max(last, index)
        if deadline is not None and time.monotonic() > deadline:
            done = f"{len(kept)} of {len(wanted_set)} frames done"
            raise VideoError(TIMEOUT, f"decoding took longer than allowed ({done})")
        if index in wanted_set and index not in kept:
            seconds = index / info.fps if frame.pts is None else info.seconds(frame.pts)
            kept[index] = (convert(frame), frame.rotation, seconds)
            if len(kept) == len(wanted_set):
                break
    return kept, last


def _check_complete(kept: dict, wanted: list[int], info: _StreamInfo, last: int) -> list[int]:
    """Wanted indices actually decoded; raise when more than the last few are missing, or
    when the stream ended well before its last frames (a truncated file)."""
    missing = [index for index in wanted if index not in kept]
    near_end = info.total_frames - EOF_SLACK_FRAMES
    # Excused: wanted frames among the last few, when the stream did reach its last few.
    tolerable = not missing or (missing[0] >= near_end and last >= near_end - 1)
    if not kept or not tolerable:
        raise VideoError(
            DECODE_ERROR,
            f"decoded {len(kept)} of {len(wanted)} wanted frames (first missing: "
            f"{missing[0]} of {info.total_frames}, stream ended after frame {last}); "
            "truncated or corrupt stream?",
        )
    return [index for index in wanted if index in kept]


def _deadline(timeout_s: float | None) -> float | None:
    return None if timeout_s is None else time.monotonic() + timeout_s


def pad_to_factor(items: list, factor: int) -> list:
    """Repeat the last item until the length is a multiple of ``factor``."""
    return items + [items[-1]] * (-len(items) % factor)


def decode_video(
    path: str,
    settings: FrameSettings,
    *,
    method: str = "auto",
    timeout_s: float | None = None,
    skip_unreferenced: bool = True,
) -> DecodedVideo:
    """Decode the frames of ``path`` chosen by ``settings``.

    :param method: ``auto`` (per video, see ``choose_decode_method``), ``sequential`` or
        ``seek`` (seek before every wanted frame that is not the next one).
    :param timeout_s: give up with a ``timeout`` VideoError after this many seconds.
    :param skip_unreferenced: do not decode unwanted frames that no other frame references
        (H.264 / HEVC with B-frames); the frames returned are the same either way.
    :raises VideoError: with kind ``unsupported_url``, ``missing_file``, ``empty_file``,
        ``not_a_video``, ``decode_error`` or ``timeout``.
    """
    if method not in DECODE_METHODS:
        raise ValueError(f"method must be one of {list(DECODE_METHODS)}, got {method!r}")
    path = os.fspath(path)
    check_local_path(path)
    deadline = _deadline(timeout_s)
    with _open(path) as container:
        try:
            return _decode_open(container, path, settings, method, deadline, skip_unreferenced)
        except VideoError as exc:  # raised below without the path: add it
            raise VideoError(exc.kind, exc.message, path) from exc
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise VideoError(DECODE_ERROR, describe_error(exc), path) from exc


@dataclass
class _Pass:
    """One decoding pass over an open container: the frames to keep, how they are reached and
    resized (what :func:`decode_video` and :func:`stream_parts` share)."""

    stream: object
    info: _StreamInfo
    settings: FrameSettings
    wanted: list[int]
    frames: Iterator[tuple[int, object]]  # (index, frame) in decoding order
    method: str
    max_pixels: int
    budget_record: dict
    planned: PartsPlan | None
    stopped: list[str]  # with parts: why the stream stopped early (the parts after fail)

    def convert(self, frame) -> np.ndarray:
        return _frame_to_array(frame, self.settings, self.max_pixels)

    def video(self, path: str, kept: dict, indices: list[int], **fields) -> DecodedVideo:
        """A :class:`DecodedVideo` of the ``kept`` frames at ``indices`` (``fields``: more)."""
        return DecodedVideo(
            path=path, frames=shared_memory.stack([kept[i][0] for i in indices]),
            frame_indices=indices, timestamps=[kept[i][2] for i in indices],
            source_fps=self.info.fps, total_frames=self.info.total_frames,
            duration=self.info.duration, width=self.stream.width, height=self.stream.height,
            rotation=kept[indices[0]][1], method=self.method, **fields)


def _start_pass(container, path, settings, method, skip, plan) -> _Pass:
    """Probe the container, pick the frames (the plan's parts, or the budgeted sampling) and
    set up the one forward pass that reaches them."""
    stream, info = _probe(container, path)
    size = lambda: (stream.height, stream.width)  # noqa: E731
    planned = plan and plan(info.total_frames, info.fps, info.timestamps(), info.duration, size)
    parts = planned.parts if planned else None
    budget_record: dict = {}
    if parts:  # windows: each part is sampled (and fitted to the budget) by the plan
        wanted = frames_to_decode(parts)
        if not wanted:  # no part fits the budget
            raise parts[0]
    else:
        budgeted = budgeted_indices(info.total_frames, info.fps, info.timestamps(), size,
                                    settings)
        wanted, settings, budget_record = budgeted.wanted, budgeted.settings, budgeted.record
        planned = None
    interval = keyframe_interval(_keyframe_seconds(stream, info), info.fps, info.total_frames)
    max_ahead = seek_threshold(interval) if method == "auto" else 0
    if method == "auto":
        method = choose_decode_method(wanted, interval)
    keep = set(wanted) if skip and can_skip(stream) else None  # None: decode every frame
    if method == "seek":
        targets = sorted(set(wanted))  # a strategy may pick a frame twice
        frames = _seeking_frames(container, stream, info, targets, max_ahead, interval, keep)
    elif keep is not None and info.pts_list is None:  # numbered as they are read: one pass
        frames = ranked_frames(container, stream, keep, partial(_counted_frames, path))
    else:
        frames = _numbered(skipping_frames(container, stream, info.index_of, keep), info)
    # the pixel budget is a request's: one part's frames (the plan's, with parts)
    max_pixels = planned.max_pixels if planned else frame_pixel_budget(settings, len(wanted))
    stopped: list[str] = []
    if planned:
        frames = _until_error(frames, stopped)
    return _Pass(stream, info, settings, wanted, frames, method, max_pixels, budget_record,
                 planned, stopped)


def _decode_open(container, path, settings, method, deadline, skip) -> DecodedVideo:
    """The body of :func:`decode_video` once the container is open."""
    run = _start_pass(container, path, settings, method, skip, None)
    return _whole(run, path, deadline)


def _whole(run: _Pass, path: str, deadline: float | None) -> DecodedVideo:
    """The video of a pass without parts: every wanted frame, padded to the temporal factor."""
    kept, last = _collect(run.frames, run.wanted, run.convert, run.info, deadline)
    indices = pad_to_factor(_check_complete(kept, run.wanted, run.info, last),
                            run.settings.temporal_factor)
    return run.video(path, kept, indices, frame_budget=run.budget_record)


def stream_parts(path: str, settings: FrameSettings, plan: FramePlan, *,
                 timeout_s: float | None = None) -> Iterator:
    """:func:`decode_video` of a video split by ``plan`` into parts (windows), handing each
    part over as soon as its last frame is decoded, still in one forward pass: yields
    ``(index, DecodedVideo | VideoError)`` per part in order, each part's frames stacked apart
    (its own shared-memory file in a decoding worker), and drops the frames no later part
    needs; a video the plan does not split is yielded once, whole. ``timeout_s`` counts per
    part, from when it is asked for.

    :raises VideoError: when the video cannot be opened or probed.
    """
    path = os.fspath(path)
    check_local_path(path)
    with _open(path) as container:
        try:
            run = _start_pass(container, path, settings, "auto", True, plan)
            if run.planned is None:
                yield _whole(run, path, _deadline(timeout_s))
                return
            yield from _stream_open(run, path, timeout_s)
        except VideoError as exc:
            raise VideoError(exc.kind, exc.message, path) from exc
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise VideoError(DECODE_ERROR, describe_error(exc), path) from exc


def _stream_open(run: _Pass, path: str, timeout_s: float | None) -> Iterator:
    """The parts of :func:`stream_parts` once the pass is set up."""
    parts, kept, last = run.planned.parts, {}, -1
    for at, part in enumerate(parts):
        if isinstance(part, VideoError):  # refused by the plan
            yield at, part
            continue
        # the frames up to this part's last one, not reached yet (later parts' among them)
        ahead = [index for index in run.wanted if last < index <= max(part)]
        if ahead:
            new, reached = _collect(run.frames, ahead, run.convert, run.info,
                                    _deadline(timeout_s))
            kept.update(new)
            last = max(last, reached)
        outcome = _part_outcome(kept, part, run.info, last, run.settings, run.stopped)
        if not isinstance(outcome, VideoError):
            outcome = run.video(path, kept, outcome, frame_budget=run.planned.records[at])
        later = {index for rest in parts[at + 1:] if not isinstance(rest, VideoError)
                 for index in rest}
        kept = {index: frame for index, frame in kept.items() if index in later}
        yield at, outcome


def _until_error(frames: Iterator, stopped: list[str]) -> Iterator:
    """``frames`` until the stream fails (a corrupt or truncated tail): then the failure is
    appended to ``stopped`` and the frames end, so that the parts decoded so far are kept."""
    try:
        yield from frames
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        stopped.append(describe_error(exc))


def _part_outcome(kept, part, info, last, settings, stopped) -> list[int] | VideoError:
    """One part's frame indices (padded), or why its frames could not all be decoded."""
    if isinstance(part, VideoError):  # refused by the plan (over the budget)
        return part
    own = {index: kept[index] for index in part if index in kept}
    try:
        return pad_to_factor(_check_complete(own, part, info, last), settings.temporal_factor)
    except VideoError as error:
        why = f" ({stopped[0]})" if stopped else ""
        return VideoError(error.kind, error.message + why)
