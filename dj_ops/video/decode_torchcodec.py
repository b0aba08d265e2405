"""The ``torchcodec`` decoder (extra ``torchcodec``; CPU builds 0.12/0.13 need the system's
FFmpeg libraries, e.g. ``apt-get install ffmpeg``).

Frames are sampled on indices from the stream's frame count and mean rate (torchcodec does not
expose every frame's time, so a variable-rate video is sampled as if its rate were constant;
the recorded timestamps are the frames' real ones), fetched with ``get_frames_at`` (exact
seeking, which torchcodec plans itself), then resized like the PyAV path. Display rotation is
not applied. The time limit is enforced by the decoding pool, not here.
"""

from __future__ import annotations

import os

from torchcodec.decoders import VideoDecoder

from dj_ops.video.budget import budgeted_indices
from dj_ops.video.decode import DecodedVideo
from dj_ops.video.decode_process import current as decode_process
from dj_ops.video.errors import DECODE_ERROR, VideoError, check_local_path, open_error
from dj_ops.video.frames import assemble, fetch_resized
from dj_ops.video.settings import FrameSettings

NAME = "torchcodec"


def decode_video(path: str, settings: FrameSettings, *, timeout_s: float | None = None
                 ) -> DecodedVideo:
    """Decode the frames of ``path`` chosen by ``settings`` (see :mod:`dj_ops.video.decoders`).

    :raises VideoError: like :func:`dj_ops.video.decode.decode_video`, except ``timeout``.
    """
    path = os.fspath(path)
    check_local_path(path)
    try:
        decoder = VideoDecoder(path, seek_mode="exact", dimension_order="NHWC",
                               num_ffmpeg_threads=decode_process().threads)
    except (RuntimeError, ValueError) as error:
        raise open_error(path, error) from error
    meta = decoder.metadata
    if not meta.num_frames or not meta.average_fps:
        raise VideoError(DECODE_ERROR, "the video stream holds no frames", path)
    start = meta.begin_stream_seconds or 0.0

    def fetch(indices: list[int]):
        batch = decoder.get_frames_at(indices)
        return batch.data.numpy(), [t - start for t in batch.pts_seconds.tolist()]

    try:
        budgeted = budgeted_indices(meta.num_frames, meta.average_fps, None,
                                    lambda: (meta.height, meta.width), settings)
        wanted, settings = budgeted.wanted, budgeted.settings
        images, seconds, _ = fetch_resized(fetch, sorted(set(wanted)), settings, len(wanted))
    except (RuntimeError, ValueError, IndexError) as error:
        raise VideoError(DECODE_ERROR, str(error), path) from error
    return assemble(
        path, wanted, images, seconds, settings,
        source_fps=meta.average_fps, total_frames=meta.num_frames,
        duration=meta.duration_seconds or meta.num_frames / meta.average_fps,
        width=meta.width, height=meta.height, method="get_frames_at", decoder=NAME,
        frame_budget=budgeted.record,
    )
