"""Video decoding and frame sampling for the captioning ops."""

from dj_ops.video.decode import DecodedVideo, decode_video
from dj_ops.video.errors import ERROR_KINDS, VideoError
from dj_ops.video.sampling import (
    SAMPLERS,
    frame_pixel_budget,
    sample_frame_indices,
    smart_resize,
)
from dj_ops.video.settings import FrameSettings

__all__ = [
    "ERROR_KINDS",
    "SAMPLERS",
    "DecodedVideo",
    "FrameSettings",
    "VideoError",
    "decode_video",
    "frame_pixel_budget",
    "sample_frame_indices",
    "smart_resize",
]
