"""Operators registered in Data-Juicer's ``OPERATORS`` registry on import."""

from dj_ops.ops.vlm_video_captioning_mapper import OP_NAME, VLMVideoCaptioningMapper

__all__ = ["OP_NAME", "VLMVideoCaptioningMapper"]
