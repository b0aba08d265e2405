"""Decoding one video the way the CogVLM2-Llama3-Caption model card does (decord, from the
file's bytes), with its frames picked by dj_ops' ``chat`` / ``base`` samplers."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

import numpy as np

from dj_ops_cogvlm2_server.cogvlm2_interface import TEMPLATE_VERSIONS, to_cthw
from dj_ops_cogvlm2_server.sampling import SAMPLERS

DATA_URL_PREFIX = "data:video/mp4;base64,"
STRATEGIES = TEMPLATE_VERSIONS  # the card's frame strategies, also its template versions


class VideoInputError(ValueError):
    """The request's video cannot be read (answered with HTTP 400)."""


@dataclass(frozen=True)
class Window:
    """The part of ``FrameSettings`` the ``chat`` and ``base`` samplers read."""

    strategy: str
    video_start: float | None = None
    video_end: float | None = None


def video_bytes(url: str, allow_files: bool) -> bytes:
    """The bytes of an MP4 data URL, or of a ``file://`` URL's file when ``allow_files``."""
    if url.startswith(DATA_URL_PREFIX):
        try:
            return base64.b64decode(url[len(DATA_URL_PREFIX):], validate=True)
        except ValueError as error:
            raise VideoInputError(f"the data URL is not valid base64: {error}") from error
    if url.startswith("file://"):
        if not allow_files:
            raise VideoInputError("file:// URLs are refused: start the server with "
                                  "--allow-local-files to read videos from its disk")
        try:
            with open(unquote(urlparse(url).path), "rb") as file:
                return file.read()
        except OSError as error:
            raise VideoInputError(f"cannot read {url}: {error}") from error
    raise VideoInputError(f"video_url must be a file:// or {DATA_URL_PREFIX} URL")


def frame_indices(timestamps: np.ndarray, fps: float, strategy: str) -> list[int]:
    """The frames ``strategy`` picks, from each frame's start time (seconds) and the mean fps."""
    if strategy not in STRATEGIES:
        raise VideoInputError(f"template_version must be one of {list(STRATEGIES)}, "
                              f"got {strategy!r}")
    return SAMPLERS[strategy](len(timestamps), fps, timestamps.tolist(), Window(strategy))


def load_video(data: bytes, strategy: str):
    """The picked frames as the ``(C, T, H, W)`` uint8 tensor the model takes, and their
    indices; decord reads the bytes as the card does (``VideoReader(io.BytesIO(...))``)."""
    from decord import DECORDError, VideoReader, cpu

    try:
        reader = VideoReader(io.BytesIO(data), ctx=cpu(0))
        timestamps = reader.get_frame_timestamp(np.arange(len(reader)))[:, 0]
        indices = frame_indices(timestamps, reader.get_avg_fps(), strategy)
        frames = reader.get_batch(indices).asnumpy()
    except (DECORDError, RuntimeError) as error:
        raise VideoInputError(f"cannot decode the video: {type(error).__name__}: "
                              f"{str(error)[:300]}") from error
    return to_cthw(frames), indices
