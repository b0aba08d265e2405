"""The ``decord`` decoder (extra ``decord``; 0.6.0 imports and decodes on Python 3.11).

decord is fast at ``get_batch`` but known to hang or leak memory on some files: run it only in
the decoding pool's worker processes (the default), where a hung video is killed at its time
limit. Frames are sampled from decord's per-frame timestamps (variable frame rates included),
fetched with ``get_batch`` and resized like the PyAV path. Display rotation is not applied.
"""

from __future__ import annotations

import os

import decord
import numpy as np

from dj_ops.video.budget import budgeted_indices
from dj_ops.video.decode import DecodedVideo
from dj_ops.video.errors import DECODE_ERROR, VideoError, check_local_path, open_error
from dj_ops.video.frames import assemble, fetch_resized, timestamps_if_variable
from dj_ops.video.settings import FrameSettings

NAME = "decord"
DECORD_ERRORS = (decord.DECORDError, RuntimeError, ValueError, IndexError)


def decode_video(path: str, settings: FrameSettings, *, timeout_s: float | None = None
                 ) -> DecodedVideo:
    """Decode the frames of ``path`` chosen by ``settings`` (see :mod:`dj_ops.video.decoders`).

    :raises VideoError: like :func:`dj_ops.video.decode.decode_video`, except ``timeout``.
    """
    path = os.fspath(path)
    check_local_path(path)
    try:
        reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
    except DECORD_ERRORS as error:
        raise open_error(path, error) from error
    try:
        total, fps = len(reader), float(reader.get_avg_fps())
        if not total or not fps > 0:
            raise VideoError(DECODE_ERROR, "the video stream holds no frames", path)
        starts = reader.get_frame_timestamp(np.arange(total))[:, 0].astype(float).tolist()
        budgeted = budgeted_indices(total, fps, timestamps_if_variable(starts, fps),
                                    lambda: reader[0].shape[:2], settings)
        wanted, settings = budgeted.wanted, budgeted.settings
        images, seconds, (height, width) = fetch_resized(
            lambda indices: (reader.get_batch(indices).asnumpy(),
                             [starts[i] - starts[0] for i in indices]),
            sorted(set(wanted)), settings, len(wanted),
        )
    except DECORD_ERRORS as error:
        raise VideoError(DECODE_ERROR, str(error), path) from error
    return assemble(
        path, wanted, images, seconds, settings,
        source_fps=fps, total_frames=total, duration=total / fps,
        width=width, height=height, method="get_batch", decoder=NAME,
        frame_budget=budgeted.record,
    )
