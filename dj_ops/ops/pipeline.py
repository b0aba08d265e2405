"""Decode and caption the videos of one batch, decoding ahead while the model generates.

The batch's distinct video paths (each decoded once, however many samples list it) are cut into
groups of ``batch_size``. Groups ``0..prefetch`` are handed to the decoding pool at once; then,
for each group in turn, its decoded videos are collected, captioned in one backend call and
dropped, and the group ``prefetch + 1`` places further on is handed to the pool. So while the
model captions group ``k``, groups ``k+1..k+prefetch`` are being decoded, and at most
``(prefetch + 1) * batch_size`` decoded videos are held in memory. ``prefetch=0`` decodes a group
only once the previous one is captioned. Groups are fixed by path order alone, never by timing:
the output is the same whatever ``prefetch`` and the number of decoding workers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from dj_ops.backends.base import CaptionBackend, CaptionRequest
from dj_ops.ops.quality_gate import QualityGate, generate_checked
from dj_ops.ops.sample_builder import SampleBuilder, VideoSlot
from dj_ops.store.session import StoreSession
from dj_ops.video.decode import DecodedVideo
from dj_ops.video.errors import VideoError
from dj_ops.video.settings import FrameSettings


def plan_groups(paths: Sequence[str], batch_size: int) -> list[list[str]]:
    """``paths`` cut into consecutive groups of at most ``batch_size``.

    >>> plan_groups(["a", "b", "c"], 2)
    [['a', 'b'], ['c']]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [list(paths[start : start + batch_size]) for start in range(0, len(paths), batch_size)]


def slots_to_caption(builder: SampleBuilder,
                     store: StoreSession | None) -> dict[str, list[VideoSlot]]:
    """The slots still to caption, by path (each path decoded once): every slot of
    ``builder`` but those whose captions the result store gave it."""
    slots: dict[str, list[VideoSlot]] = {}
    for slot in builder.video_slots():
        slots.setdefault(slot.path, []).append(slot)
    return store.reuse(builder, slots) if store is not None else slots


def record_result(builder: SampleBuilder, slot: VideoSlot, result, timestamps,
                  store: StoreSession | None) -> bool:
    """Give ``builder`` a slot's candidates (kept for the store too) or its failure; whether
    there were candidates."""
    if not result.ok:  # a failure after generation keeps its candidates' token facts
        builder.fail_video(slot, result.error_kind, result.error_message,
                           result.candidates[0] if result.candidates else None)
        return False
    builder.set_candidates(slot, result.candidates, timestamps)
    if store is not None:
        store.add(slot, result.candidates, timestamps, builder.frames_of(slot),
                  builder.windows_of(slot))
    return True


def video_request(video: DecodedVideo, slot: VideoSlot,
                  system_prompt: str | None) -> CaptionRequest:
    """The request of one slot's decoded video (or of one window of it)."""
    return CaptionRequest(video.frames, video.transformers_metadata(), slot.prompt,
                          system_prompt, video_path=slot.path)


def caption_batch(builder: SampleBuilder, backend: CaptionBackend, source, settings: FrameSettings,
                  *, batch_size: int, prefetch: int, system_prompt: str | None = None,
                  store: StoreSession | None = None, gate: QualityGate | None = None,
                  caption_group=None) -> None:
    """Caption every video slot of ``builder``, recording candidates or failures in it.

    :param source: where videos are decoded (``submit(path, settings) -> ticket``,
        ``result(ticket)``, ``discard(tickets)``): a ``DecodePool`` or an ``InlineDecoder``.
    :param batch_size: distinct videos per group (one backend call each).
    :param prefetch: groups decoded ahead of the one being captioned (0: none).
    :param store: a result store: slots stored there are not decoded nor generated again, and
        each group's new captions are written to it before the next group.
    :param gate: the quality gate (None: the backend's candidates as they come).
    :param caption_group: what captions one decoded group (the signature of
        ``_caption_group``, its default; the windows' one: ``dj_ops.ops.windowed``).
    """
    caption_group = caption_group or _caption_group
    slots = slots_to_caption(builder, store)
    groups = plan_groups(list(slots), batch_size)
    tickets: dict[str, int] = {}

    def hand_over(index: int) -> None:
        for path in groups[index] if index < len(groups) else []:
            tickets[path] = source.submit(path, settings)

    for index in range(prefetch + 1):
        hand_over(index)
    try:
        for index, group in enumerate(groups):
            videos = {path: source.result(tickets.pop(path)) for path in group}
            caption_group(builder, backend, videos, slots, system_prompt, store, gate)
            del videos  # before the next group is decoded: the memory bound
            hand_over(index + prefetch + 1)
    finally:
        source.discard(tickets.values())  # left over only when captioning raised


def _caption_group(builder: SampleBuilder, backend: CaptionBackend,
                   videos: dict[str, DecodedVideo | VideoError],
                   slots: dict[str, list[VideoSlot]], system_prompt: str | None,
                   store: StoreSession | None = None, gate: QualityGate | None = None) -> None:
    """One backend call for every slot of the decoded ``videos`` (and, through the gate, one
    per retry of the failing ones); failures are recorded."""
    captioned, requests = [], []
    for path, video in videos.items():
        for slot in slots[path]:
            if isinstance(video, VideoError):
                builder.fail_video(slot, video.kind, video.message)
                continue
            captioned.append((slot, video))
            builder.note_frames(slot, video)
            requests.append(video_request(video, slot, system_prompt))
    if not requests:
        return
    started = time.perf_counter()
    results = generate_checked(backend, requests, gate)
    share = (time.perf_counter() - started) / len(requests)  # each video's, for the report
    for (slot, video), result in zip(captioned, results, strict=True):
        builder.note_generation(slot, share)
        record_result(builder, slot, result, video.timestamps, store)
    if store is not None:
        store.flush()  # one transaction per group: a kill loses at most the group in flight
