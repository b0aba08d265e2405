"""What a family's processor needs from the videos of one ``generate`` call, read from the
processor itself (its classes' own attributes), never found by trying.

Read from transformers 5.25's video processors (``video_processing_*.py``) and processors:

- a video processor whose outputs include ``video_grid_thw`` (Qwen-VL, GLM-4.1V) flattens each
  video into patches: videos of any frame count and size share a call;
- one that pads (``do_pad``: SmolVLM) pads frames and sizes to the largest of the call, with a
  mask: any frame count;
- any other returns one ``(videos, frames, C, H, W)`` tensor (LLaVA-OneVision, LLaVA-NeXT-Video,
  Video-LLaVA, InternVL), which cannot stack different frame counts: videos are grouped by frame
  count, and each group is one call;
- a processor that cuts frames into patches (``patch_size`` and ``merge_size``) takes frames of
  any size, multiples of its patch factor, which the op decodes at; any other resizes frames to
  its vision tower's fixed input (``size``, ``crop_size``, ``max_image_size``): the op then lets
  it resize (``do_resize``);
- a processor whose default video options ask for the frames' metadata (``return_metadata``)
  reads the frames' times from it: timestamps in the prompt (Qwen3-VL, SmolVLM, GLM-4.1V) or
  time positions (Qwen2.5-VL's ``fps``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ANY = "any"  # videos of any frame count and size share a call
SAME_FRAME_COUNT = "same_frame_count"  # grouped by frame count, one call per group
ONE_PER_CALL = "one_per_call"  # one video per call (families not in the table)
BATCHING = (ANY, SAME_FRAME_COUNT, ONE_PER_CALL)


@dataclass(frozen=True)
class VideoNeeds:
    """What one ``generate`` call of a family needs from its videos.

    :param batching: :data:`ANY`, :data:`SAME_FRAME_COUNT` or :data:`ONE_PER_CALL`.
    :param processor_resizes: the vision tower takes a fixed size, and the processor resizes the
        op's frames to it (``do_resize: true``); False: frames go as decoded (multiples of the
        patch factor).
    :param frame_size: that fixed size as ``(height, width)`` when the processor says it.
    :param frame_times: the processor reads the frames' times from their metadata.
    :param video_token: the placeholder its chat template writes for a video (None: unknown).
    """

    batching: str
    processor_resizes: bool
    frame_size: tuple[int, int] | None = None
    frame_times: bool = False
    video_token: str | None = None

    def batch_key(self, frames_shape: tuple[int, ...]) -> tuple[int, ...] | None:
        """Videos with different keys never share a call: their frame count (and, unless the
        processor resizes, their size) for :data:`SAME_FRAME_COUNT`; None otherwise."""
        if self.batching != SAME_FRAME_COUNT:
            return None
        return tuple(frames_shape[:1] if self.processor_resizes else frames_shape[:3])

    def describe(self) -> dict[str, Any]:
        """The needs as a JSON-ready dict (logs, docs)."""
        return {"batching": self.batching, "processor_resizes": self.processor_resizes,
                "frame_size": list(self.frame_size) if self.frame_size else None,
                "frame_times": self.frame_times, "video_token": self.video_token}


# The safe path for a family nobody has tested: one video per call, frames resized by its own
# processor to whatever its tower takes.
GENERIC_NEEDS = VideoNeeds(ONE_PER_CALL, processor_resizes=True)


def cuts_patches(video_processor) -> bool:
    """Whether the video processor cuts frames into patches (Qwen-VL style): any frame size."""
    return (isinstance(getattr(video_processor, "patch_size", None), int)
            and getattr(video_processor, "merge_size", None) is not None)


def fixed_frame_size(video_processor) -> tuple[int, int] | None:
    """The square or rectangle the processor resizes frames to, when it says one."""
    for name in ("crop_size", "max_image_size", "size"):
        size = getattr(video_processor, name, None)
        size = size if isinstance(size, dict) else getattr(size, "__dict__", None) or {}
        if size.get("height") and size.get("width"):
            return int(size["height"]), int(size["width"])
        if name == "max_image_size" and size.get("longest_edge"):
            side = int(size["longest_edge"])
            return side, side
    return None


def learn_video_needs(processor) -> VideoNeeds:
    """The needs of the family whose processor is ``processor`` (see the module docstring)."""
    video = getattr(processor, "video_processor", None)
    outputs = list(getattr(video, "model_input_names", None) or [])
    if "video_grid_thw" in outputs or getattr(video, "do_pad", False):
        batching = ANY
    else:
        batching = SAME_FRAME_COUNT
    defaults = getattr(type(processor), "videos_kwargs", None)
    frame_times = isinstance(defaults, dict) and bool(defaults.get("return_metadata"))
    resizes = not cuts_patches(video)
    return VideoNeeds(batching, processor_resizes=resizes,
                      frame_size=fixed_frame_size(video) if resizes else None,
                      frame_times=frame_times,
                      video_token=getattr(processor, "video_token", None))
