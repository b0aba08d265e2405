"""Re-encode sampled frames as a small H.264 MP4 in memory, for servers that take video files.

The frames keep their spacing in time: they are written at the rate at which they were sampled,
so the clip lasts as long as the stretch of video they cover.
"""

from __future__ import annotations

import base64
import io
from fractions import Fraction

import av
import numpy as np

CODEC = "libx264"
PIXEL_FORMAT = "yuv420p"  # what every decoder reads; needs even sides
# Near-lossless: the server should see the frames we sampled, not compression artefacts.
CODEC_OPTIONS = {"crf": "18", "preset": "veryfast"}
FALLBACK_FPS = 1.0


def frames_fps(metadata: dict) -> float:
    """Rate of sampled frames from their metadata (``frames_indices`` in a stream of ``fps``):
    frames over the time they span, or :data:`FALLBACK_FPS` for a single instant."""
    indices = metadata["frames_indices"]
    span = (indices[-1] - indices[0]) / metadata["fps"]
    return (len(indices) - 1) / span if len(indices) > 1 and span > 0 else FALLBACK_FPS


def _even_sized(frames: np.ndarray) -> np.ndarray:
    """Pad odd heights or widths by one edge row or column."""
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if not pad_h and not pad_w:
        return frames
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def encode_mp4(frames: np.ndarray, fps: float) -> bytes:
    """``(T, H, W, 3)`` uint8 frames as MP4 bytes, frame ``i`` at ``i / fps`` seconds."""
    frames = _even_sized(np.ascontiguousarray(frames, dtype=np.uint8))
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream(CODEC, rate=Fraction(fps).limit_denominator(1000),
                                      options=CODEC_OPTIONS)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = PIXEL_FORMAT
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def mp4_data_url(frames: np.ndarray, fps: float) -> str:
    """The frames as a ``data:video/mp4;base64,...`` URL."""
    return "data:video/mp4;base64," + base64.b64encode(encode_mp4(frames, fps)).decode("ascii")
