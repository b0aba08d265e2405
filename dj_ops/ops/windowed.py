"""Long videos captioned window by window, then merged into one caption per video.

With ``window_seconds`` set, each decoding worker decodes a long video in one forward pass and
hands its windows over one by one, each as soon as its last frame is decoded
(:func:`~dj_ops.video.decode_windows.stream_windowed`), decoding the next only once the op has
taken it. Here, for each micro-batch of videos, each video's stream is read in turn:

1. every window is one request (its frames, and its true frame indices, so Qwen3-VL's prompt
   carries the window's times in the whole video), and a video no longer than one window is
   one request as without windows; requests go to the backend ``batch_size`` at a time (those of
   several windows or videos together), so the op holds at most ``batch_size`` windows' frames
   plus one handed over (waiting to be read) per decoding worker, however long the video:
   memory is bounded by windows, not by the video;
2. each long video's window captions, ``[{start, end, caption, error_kind, error_message,
   frames}]``, go in its record (``windows``); a window that failed (its frames could not be
   decoded, it does not fit the frame budget, the engine refused it) keeps its error there and
   the others are still captioned and merged;
3. after the micro-batch's last window, one text-only request per long video (no video input:
   the same model, or ``merge_model``) gets :func:`~dj_ops.captioning.merge.merge_prompt` of its
   window captions, with their times as ``[12.0 s - 24.0 s]`` lines, and asks for entities named
   the same throughout; its answer is the video's caption, written where a caption always goes
   (after the video token, or in ``caption_key``). A video none of whose windows was captioned
   fails as a whole.

Self-batching backends (vLLM, a server) get ``batch_size`` window requests per ``generate`` call
here (the merge needs all of a video's windows first), not the continuous feeding of
:mod:`dj_ops.ops.streaming`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial

from dj_ops.backends.base import CaptionBackend, CaptionRequest, text_request
from dj_ops.captioning.merge import MERGE_INSTRUCTION, WindowCaption, merge_prompt
from dj_ops.captioning.records import META_KEY, WindowOutcome
from dj_ops.captioning.requests import CaptionResult
from dj_ops.ops.config import DecodingConfig, TextLayout
from dj_ops.ops.pipeline import record_result, video_request
from dj_ops.ops.quality_gate import QualityGate, generate_checked
from dj_ops.ops.sample_builder import SampleBuilder, VideoSlot
from dj_ops.ops.window_config import WindowConfig
from dj_ops.video.budget import frames_record
from dj_ops.video.decode import DecodedVideo
from dj_ops.video.decode_windows import WindowedFrames, WindowVideo, stream_windowed
from dj_ops.video.decoders import open_source
from dj_ops.video.errors import VideoError
from dj_ops.video.settings import FrameSettings
from dj_ops.video.streams import PartStream, StreamingSource
from dj_ops.video.windows import Window

WINDOWS_FIELD_SUFFIX = "_windows"  # caption_key mode: the window captions beside the captions


def window_entry(window: Window, result: CaptionResult | VideoError,
                 frames: dict | None = None) -> WindowOutcome:
    """One window's line in a record: its span, its caption (the first candidate, as the
    quality gate kept it) or error, its token facts and the gate's flags of each attempt, and
    what its frames were decoded at (``frames``: :func:`~dj_ops.video.budget.frames_record`,
    count 0 for a window not decoded)."""
    span = {"start": float(window.start), "end": float(window.end),
            "frames": frames or frames_record((0, 0, 0), {})}
    if isinstance(result, VideoError):
        return WindowOutcome(**span, error_kind=result.kind, error_message=result.message)
    first = result.candidates[0] if result.candidates else None
    facts = {} if first is None else {
        "generated_tokens": first.num_tokens, "hit_token_limit": first.hit_token_limit,
        "repetition_trimmed": first.repetition_trimmed, "attempts": first.attempts}
    if not result.ok:
        return WindowOutcome(**span, error_kind=result.error_kind,
                             error_message=result.error_message, **facts)
    return WindowOutcome(**span, caption=first.text, **facts)


def windows_frames(entries: list[WindowOutcome], frames_decoded: int) -> dict:
    """A windowed video's own ``frames`` record: the distinct frames decoded for its windows
    (one pass: a frame two windows share is decoded once), their size, the visual tokens of
    all its windows and the per-window budget, and the strongest cut any window took."""
    decoded = [e.frames for e in entries if e.frames.get("count")]
    if not decoded:
        return {}
    counted = [f["visual_tokens"] for f in decoded if f.get("visual_tokens", -1) >= 0]
    cuts = [f.get("reduced", "") for f in decoded]
    return {"count": frames_decoded, "height": decoded[0]["height"],
            "width": decoded[0]["width"],
            "visual_tokens": sum(counted) if counted else -1,
            "max_visual_tokens": decoded[0].get("max_visual_tokens", -1),
            "reduced": next((cut for cut in ("pixels", "frames", "none") if cut in cuts), "")}


@dataclass
class _LongVideo:
    """A slot whose video has windows: per window its record entry once known, the windows
    received so far, and the times of their frames (by frame index: the record's timestamps)."""

    slot: VideoSlot
    entries: list[WindowOutcome | None]
    received: set[int] = field(default_factory=set)
    times: dict[int, float] = field(default_factory=dict)
    duration: float = 0.0


class _Pending:
    """Requests waiting for one backend call (through the gate): sent once ``limit`` wait, so at
    most ``limit`` requests' frames are held; ``done(result)`` is called with each answer."""

    def __init__(self, backend: CaptionBackend, gate: QualityGate | None, limit: int):
        self.backend, self.gate, self.limit = backend, gate, max(1, limit)
        self.items: list[tuple[CaptionRequest, object]] = []

    def add(self, request: CaptionRequest, done) -> None:
        self.items.append((request, done))
        if len(self.items) >= self.limit:
            self.flush()

    def flush(self) -> None:
        items, self.items = self.items, []
        if not items:
            return
        results = generate_checked(self.backend, [request for request, _ in items], self.gate)
        for (_, done), result in zip(items, results, strict=True):
            done(result)


class WindowedCaptioning:
    """The windows' part of a captioner: its decoding source and its micro-batch step.

    :param config: the op's window parameters (enabled).
    :param frames: the op's frame settings, sized to the backend (applied to each window).
    :param batch_size: requests per backend call (windows' frames held at once, besides the one
        the decoding worker hands over next).
    """

    def __init__(self, config: WindowConfig, frames: FrameSettings, batch_size: int = 1):
        self.config, self.batch_size = config, batch_size
        self.job = WindowedFrames(frames, config.seconds, config.overlap)

    def budgeted(self, frames: FrameSettings) -> WindowedFrames:
        """What the decoding worker is sent for a batch: the windows with the batch's frame
        settings (``FrameBudget.for_prompts``: each window fitted to its budget)."""
        return replace(self.job, frames=frames)

    def open_source(self, decoding: DecodingConfig, workers: int) -> StreamingSource:
        """Where videos are decoded: one pass per video, its windows streamed one by one (the
        caller closes it)."""
        return StreamingSource(open_source(stream_windowed, workers, decoding.timeout_s))

    def caption_group(self, builder: SampleBuilder, backend: CaptionBackend,
                      videos: dict[str, PartStream], slots: dict[str, list[VideoSlot]],
                      system_prompt: str | None, store=None,
                      gate: QualityGate | None = None) -> None:
        """Caption one micro-batch of videos (``pipeline.caption_batch``'s step), each window as
        it is decoded (at most ``batch_size`` requests held), then merge each long video's; the
        quality gate checks the window captions and the merged one."""
        pending = _Pending(backend, gate, self.batch_size)
        long: list[_LongVideo] = []
        try:
            for path, stream in videos.items():
                self._read(builder, stream, slots[path], system_prompt, pending, long, store)
            pending.flush()
        finally:
            for stream in videos.values():
                stream.close()
        self._merge(builder, backend, long, gate, store)
        if store is not None:
            store.flush()  # one transaction per micro-batch: a kill loses at most this one

    def _read(self, builder: SampleBuilder, stream: PartStream, slots: list[VideoSlot],
              system_prompt: str | None, pending: _Pending, long: list[_LongVideo],
              store=None) -> None:
        """One video's stream, item by item (none is referenced here once read: a window's
        frames are held by its pending request alone)."""
        for item in stream:
            self._take(builder, item, slots, system_prompt, pending, long, store)

    def _take(self, builder: SampleBuilder, item, slots: list[VideoSlot],
              system_prompt: str | None, pending: _Pending, long: list[_LongVideo],
              store=None) -> None:
        """One item of a video's stream: a window, a whole (short) video, or its error."""
        if isinstance(item, WindowVideo):
            mine = [v for v in long if any(v.slot is slot for slot in slots)]
            if not mine:
                mine = [_LongVideo(slot, [None] * item.window_count) for slot in slots]
                long.extend(mine)
            for video in mine:
                builder.note_window(video.slot, item)  # a tile of its strip, for the report
                self._add_window(video, item, system_prompt, pending)
        elif isinstance(item, VideoError):
            started = [v for v in long if any(v.slot is slot for slot in slots)]
            for slot in slots if not started else []:
                builder.fail_video(slot, item.kind, item.message)
            for video in started:  # the stream broke off: the windows not received fail
                for window in self.job.windows(video.duration):
                    if window.index not in video.received:
                        video.entries[window.index] = window_entry(window, item)
        else:  # a video no longer than one window
            for slot in slots:
                builder.note_frames(slot, item)
                pending.add(video_request(item, slot, system_prompt),
                            partial(_whole_done, builder, slot, item, store))

    @staticmethod
    def _add_window(video: _LongVideo, item: WindowVideo, system_prompt: str | None,
                    pending: _Pending) -> None:
        video.received.add(item.window.index)
        video.duration = item.duration
        if item.error is not None:
            video.entries[item.window.index] = window_entry(item.window, item.error)
            return
        video.times.update(zip(item.frame_indices, item.timestamps))
        record = frames_record(item.frames.shape, item.frame_budget)

        def done(result) -> None:
            video.entries[item.window.index] = window_entry(item.window, result, record)
        pending.add(video_request(item, video.slot, system_prompt), done)

    def _merge(self, builder: SampleBuilder, backend: CaptionBackend, long: list[_LongVideo],
               gate: QualityGate | None = None, store=None) -> None:
        """Record each long video's windows and frames, then caption it from them (one
        text-only call, through the quality gate like every window)."""
        merging, requests = [], []
        for item in long:
            entries = [entry or window_entry(window, VideoError(
                "decode_error", "the window was not decoded"))
                for entry, window in zip(item.entries, self.job.windows(item.duration))]
            builder.set_windows(item.slot, entries)
            builder.set_frames(item.slot, windows_frames(entries, len(item.times)))
            captions = [WindowCaption(e.start, e.end, e.caption) for e in entries]
            if not any(c.caption.strip() for c in captions):
                first = entries[0]
                builder.fail_video(item.slot, first.error_kind or "empty_caption",
                                   f"no window was captioned; window 0: "
                                   f"{first.error_message or 'empty caption'}")
                continue
            merging.append(item)
            requests.append(text_request(
                merge_prompt(captions, self.config.merge_prompt or MERGE_INSTRUCTION),
                model=self.config.merge_model))
        merged = generate_checked(backend, requests, gate, text_only=True)
        for item, result in zip(merging, merged, strict=True):
            times = [item.times[index] for index in sorted(item.times)]
            record_result(builder, item.slot, result, times, store)


def _whole_done(builder: SampleBuilder, slot: VideoSlot, video: DecodedVideo, store,
                result) -> None:
    """A video no longer than one window: its one window in its record, and its caption."""
    window = Window(0, 0.0, round(video.duration, 6))
    builder.set_windows(slot, [window_entry(window, result, frames_record(
        video.frames.shape, video.frame_budget))])
    record_result(builder, slot, result, video.timestamps, store)


def with_windows_field(output: dict[str, list], layout: TextLayout,
                       caption_key: str) -> dict[str, list]:
    """``output`` with ``<caption_key>_windows``: per row, per video, its window captions from
    its record ([] for a video without, e.g. a failed one; [] for a row without videos)."""
    rows = []
    for meta, paths in zip(output[layout.meta_key], output[layout.video_key], strict=True):
        record = (meta or {}).get(META_KEY) or {}
        by_path = {v["path"]: v.get("windows", []) for v in record.get("videos", [])}
        rows.append([by_path.get(path, []) for path in paths or []])
    return {**output, caption_key + WINDOWS_FIELD_SUFFIX: rows}
