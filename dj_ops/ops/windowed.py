"""Long videos captioned window by window, then merged into one caption per video.

With ``window_seconds`` set, the decoding workers decode every window of a long video in one pass
(:mod:`dj_ops.video.decode_windows`); here, for each micro-batch of decoded videos:

1. every window of every long video is one request (its frames, and its true frame indices, so
   Qwen3-VL's prompt carries the window's times in the whole video), and a video no longer than
   one window is one request as without windows; all go to the backend in one call;
2. each long video's window captions, ``[{start, end, caption, error_kind, error_message}]``,
   go in its record (``windows``); a window that failed (its frames could not be decoded, the
   engine refused it) keeps its error there and the others are still captioned and merged;
3. one text-only request per long video (no video input: the same model, or ``merge_model``)
   gets :func:`~dj_ops.captioning.merge.merge_prompt` of its window captions, with their times
   as ``[12.0 s - 24.0 s]`` lines, and asks for entities named the same throughout; its
   answer is the video's caption, written where a caption always goes (after the video token,
   or in ``caption_key``). A video none of whose windows was captioned fails as a whole.

Self-batching backends (vLLM, a server) get each micro-batch's requests in one ``generate`` call
here (the merge needs all of a video's windows first), not the continuous feeding of
:mod:`dj_ops.ops.streaming`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from dj_ops.backends.base import CaptionBackend, CaptionRequest
from dj_ops.captioning.merge import MERGE_INSTRUCTION, WindowCaption, merge_prompt
from dj_ops.captioning.records import META_KEY
from dj_ops.captioning.requests import CaptionResult
from dj_ops.ops.config import DecodingConfig, TextLayout
from dj_ops.ops.pipeline import record_result, video_request
from dj_ops.ops.quality_gate import QualityGate, generate_checked
from dj_ops.ops.sample_builder import SampleBuilder, VideoSlot
from dj_ops.ops.window_config import WindowConfig
from dj_ops.video.budget import frames_record
from dj_ops.video.decode import DecodedVideo
from dj_ops.video.decode_windows import WindowedFrames, decode_windowed, split_windows
from dj_ops.video.decoders import open_source
from dj_ops.video.errors import VideoError
from dj_ops.video.settings import FrameSettings
from dj_ops.video.windows import Window

WINDOWS_FIELD_SUFFIX = "_windows"  # caption_key mode: the window captions beside the captions


def window_entry(window: Window, result: CaptionResult | VideoError,
                 frames: dict | None = None) -> dict:
    """One window's line in a record: its span, its caption (the first candidate) or error,
    and what its frames were decoded at (``frames``: :func:`~dj_ops.video.budget.
    frames_record`, count 0 for a window not decoded)."""
    if isinstance(result, VideoError):
        caption, kind, message = "", result.kind, result.message
    elif result.ok:
        caption, kind, message = result.candidates[0].text, "", ""
    else:
        caption, kind, message = "", result.error_kind, result.error_message
    return {"start": float(window.start), "end": float(window.end), "caption": caption,
            "error_kind": kind, "error_message": message,
            "frames": frames or frames_record((0, 0, 0), {})}


@dataclass
class _LongVideo:
    """A slot whose video has windows: its decoded union, and per window where its result is
    (an index into the group's requests) or its decoding error, and its frames' record."""

    slot: VideoSlot
    video: DecodedVideo
    windows: list[tuple[Window, int | VideoError, dict | None]]


class WindowedCaptioning:
    """The windows' part of a captioner: its decoding source and its micro-batch step.

    :param config: the op's window parameters (enabled).
    :param frames: the op's frame settings, sized to the backend (applied to each window).
    """

    def __init__(self, config: WindowConfig, frames: FrameSettings):
        self.config = config
        self.job = WindowedFrames(frames, config.seconds, config.overlap)

    def budgeted(self, frames: FrameSettings) -> WindowedFrames:
        """What the decoding worker is sent for a batch: the windows with the batch's frame
        settings (``FrameBudget.for_prompts``: each window fitted to its budget)."""
        return replace(self.job, frames=frames)

    def open_source(self, decoding: DecodingConfig, workers: int):
        """Where videos are decoded, all windows of one in one pass (the caller closes it)."""
        return open_source(decode_windowed, workers, decoding.timeout_s)

    def caption_group(self, builder: SampleBuilder, backend: CaptionBackend,
                      videos: dict[str, DecodedVideo | VideoError],
                      slots: dict[str, list[VideoSlot]], system_prompt: str | None,
                      store=None, gate: QualityGate | None = None) -> None:
        """Caption one micro-batch of decoded videos (``pipeline.caption_batch``'s step); the
        quality gate checks the window captions and the merged one."""
        requests: list[CaptionRequest] = []
        whole: list[tuple[VideoSlot, DecodedVideo, int]] = []
        long: list[_LongVideo] = []
        for path, video in videos.items():
            parts = None if isinstance(video, VideoError) or video.parts is None else \
                split_windows(video, self.job)
            for slot in slots[path]:
                if isinstance(video, VideoError):
                    builder.fail_video(slot, video.kind, video.message)
                elif parts is None:
                    builder.note_frames(slot, video)
                    whole.append((slot, video, len(requests)))
                    requests.append(video_request(video, slot, system_prompt))
                else:
                    long.append(_LongVideo(slot, video, [
                        (window, part, None) if isinstance(part, VideoError) else
                        (window, _append(requests, video_request(part, slot, system_prompt)),
                         frames_record(part.frames.shape, part.frame_budget))
                        for window, part in parts]))
        results = generate_checked(backend, requests, gate)
        for slot, video, at in whole:
            window = Window(0, 0.0, round(video.duration, 6))
            builder.set_windows(slot, [window_entry(window, results[at], frames_record(
                video.frames.shape, video.frame_budget))])
            record_result(builder, slot, results[at], video.timestamps, None)
        self._merge(builder, backend, long, results, gate)

    def _merge(self, builder: SampleBuilder, backend: CaptionBackend, long: list[_LongVideo],
               results: list[CaptionResult], gate: QualityGate | None = None) -> None:
        """Record each long video's windows, then caption it from them (one text-only call)."""
        merging, requests = [], []
        for item in long:
            entries = [window_entry(window, results[at] if isinstance(at, int) else at, frames)
                       for window, at, frames in item.windows]
            builder.set_windows(item.slot, entries)
            captions = [WindowCaption(e["start"], e["end"], e["caption"]) for e in entries]
            if not any(c.caption.strip() for c in captions):
                first = entries[0]
                builder.fail_video(item.slot, first["error_kind"] or "empty_caption",
                                   f"no window was captioned; window 0: "
                                   f"{first['error_message'] or 'empty caption'}")
                continue
            merging.append(item)
            requests.append(CaptionRequest(
                None, {}, merge_prompt(captions, self.config.merge_prompt or MERGE_INSTRUCTION),
                model=self.config.merge_model))
        for item, result in zip(merging, generate_checked(backend, requests, gate), strict=True):
            record_result(builder, item.slot, result, item.video.timestamps, None)


def _append(requests: list, request) -> int:
    """Append ``request``; its index."""
    requests.append(request)
    return len(requests) - 1


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
