"""Caption the videos of one batch by feeding a self-batching engine continuously.

For backends that batch by themselves (:class:`~dj_ops.backends.streaming.StreamingBackend`:
vLLM in process, an OpenAI-compatible server), micro-batches would make every group wait for its
slowest video and leave the engine idle between groups. Here instead each video is handed to the
engine as soon as it is decoded, up to ``max_in_flight`` requests are kept running, and results
are written back as they finish. Decoding stays bounded as before: at most ``max_decoded`` videos
are being decoded or held decoded, waiting for a free slot in the engine; once submitted, a
request's frames are the engine's (or the HTTP payload's) and are dropped here.

Every distinct path is decoded once, whatever number of samples list it. Which results come back
first depends on timing, but each is written to its own slot, so the output rows are the same
whatever the order (and identical run to run when decoding is greedy or seeded per request).
"""

from __future__ import annotations

import time
from collections import deque

from dj_ops.backends.base import CaptionRequest
from dj_ops.backends.isolation import IsolatingSession
from dj_ops.backends.streaming import StreamingBackend, StreamSession
from dj_ops.ops.pipeline import record_result, slots_to_caption, video_request
from dj_ops.ops.quality_gate import QualityGate
from dj_ops.ops.sample_builder import SampleBuilder, VideoSlot
from dj_ops.store.session import StoreSession
from dj_ops.video.errors import VideoError
from dj_ops.video.settings import FrameSettings

# How long to wait for a result while decoded videos may be ready to submit.
POLL_S = 0.02
# How long to wait for decoding while nothing is in flight.
DECODE_WAIT_S = 1.0


def caption_with_engine(builder: SampleBuilder, backend: StreamingBackend, source,
                        settings: FrameSettings, *, max_in_flight: int, max_decoded: int,
                        system_prompt: str | None = None,
                        store: StoreSession | None = None, gate: QualityGate | None = None) -> int:
    """:func:`caption_stream` through a session of ``backend``, keeping at most
    ``max_in_flight`` requests (and the backend's own limit) in flight."""
    limit = min(max_in_flight, backend.concurrency_limit or max_in_flight)
    with IsolatingSession(backend.open_stream()) as session:  # a raise fails its request
        return caption_stream(builder, session, source, settings, max_in_flight=limit,
                              max_decoded=max_decoded, system_prompt=system_prompt, store=store,
                              gate=gate)


def caption_stream(builder: SampleBuilder, session: StreamSession, source,
                   settings: FrameSettings, *, max_in_flight: int, max_decoded: int,
                   system_prompt: str | None = None, store: StoreSession | None = None,
                   gate: QualityGate | None = None) -> int:
    """Caption every video slot of ``builder`` through ``session``, recording candidates or
    failures in it.

    :param source: where videos are decoded (``submit``, ``ready``, ``result``, ``discard``).
    :param max_in_flight: requests the session holds at once.
    :param max_decoded: videos being decoded or decoded and not yet submitted.
    :param store: a result store: slots stored there are neither decoded nor generated again,
        and new captions are written to it in one transaction per ``max_decoded`` results (a
        kill loses at most those).
    :param gate: the quality gate (None: results as they come); a retry waits at the front of
        the queue of requests to submit, and its request (frames) is held until it passes.
    :returns: the most requests that were in flight at once.
    """
    if max_in_flight < 1 or max_decoded < 1:
        raise ValueError(f"max_in_flight and max_decoded must be >= 1, got {max_in_flight}, "
                         f"{max_decoded}")
    slots = slots_to_caption(builder, store)
    to_decode = deque(slots)
    decoding: dict[int, str] = {}  # ticket -> path, in submission order
    # to submit: slot, request, timestamps, the result so far (a retry's, else None)
    ready: deque[tuple[VideoSlot, CaptionRequest, list[float], object]] = deque()
    waiting: dict[int, tuple] = {}  # in flight: key -> the same, the request held for retries
    keys = iter(range(1 << 62))
    submitted: dict[int, tuple[float, int]] = {}  # key -> (when, requests then in flight)
    peak = unflushed = 0
    try:
        while to_decode or decoding or ready or waiting:
            while to_decode and len(decoding) + _videos(ready) < max_decoded:
                path = to_decode.popleft()
                decoding[source.submit(path, settings)] = path
            engine_busy = bool(waiting) or bool(ready)
            for ticket in source.ready(list(decoding), 0 if engine_busy else DECODE_WAIT_S):
                path = decoding.pop(ticket)
                _take(builder, path, slots[path], source.result(ticket), ready, system_prompt)
            while ready and len(waiting) < max_in_flight:
                slot, request, timestamps, previous = ready.popleft()
                key = next(keys)
                held = request if gate is not None and gate.retries else None
                waiting[key] = (slot, held, timestamps, previous)
                submitted[key] = (time.perf_counter(), len(waiting))
                session.submit(key, request)
            peak = max(peak, len(waiting))
            if waiting:
                for key, result in session.poll(POLL_S if decoding else 1.0):
                    slot, request, timestamps, previous = waiting.pop(key)
                    when, in_flight = submitted.pop(key)  # the video's share, for the report
                    builder.note_generation(slot, (time.perf_counter() - when) / in_flight)
                    if gate is not None:
                        result, retry = gate.after(request, result, previous)
                        if retry is not None:
                            ready.appendleft((slot, retry, timestamps, result))
                            continue
                    if record_result(builder, slot, result, timestamps, store):
                        unflushed += 1
            if store is not None and unflushed and (unflushed >= max_decoded or not waiting):
                store.flush()
                unflushed = 0
    finally:
        source.discard(decoding)  # left over only when captioning raised
    return peak


def _videos(ready: deque) -> int:
    """Distinct decoded videos among the requests waiting to be submitted."""
    return len({id(request.frames) for _, request, _, _ in ready})


def _take(builder: SampleBuilder, path: str, slots: list[VideoSlot], video,
          ready: deque, system_prompt: str | None) -> None:
    """One request per slot of a decoded ``video``, or its failure on every slot."""
    for slot in slots:
        if isinstance(video, VideoError):
            builder.fail_video(slot, video.kind, video.message)
            continue
        request = video_request(video, slot, system_prompt)
        builder.note_frames(slot, video)
        ready.append((slot, request, list(video.timestamps), None))
