"""Operators registered in Data-Juicer's ``OPERATORS`` registry on import."""

from dj_ops.ops.caption_enhancement_mapper import OP_NAME as ENHANCEMENT_OP_NAME
from dj_ops.ops.caption_enhancement_mapper import CaptionEnhancementMapper
from dj_ops.ops.vlm_video_captioning_mapper import OP_NAME, VLMVideoCaptioningMapper

__all__ = ["ENHANCEMENT_OP_NAME", "OP_NAME", "CaptionEnhancementMapper",
           "VLMVideoCaptioningMapper"]
