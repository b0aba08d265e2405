"""The op's window parameters, parsed once: long videos captioned window by window, then merged.

``window_seconds`` None (the default) turns windows off: every video is captioned as one clip.
Otherwise a video longer than one window is decoded once, captioned per window (each window's
frames and true timestamps), and its window captions are merged into one caption by a text-only
request (:mod:`dj_ops.ops.windowed`). A video no longer than one window is captioned as before.
"""

from __future__ import annotations

from dataclasses import dataclass

from dj_ops.backends.base import Capabilities
from dj_ops.ops.composition import refusal

# Decoders that decode all windows in one pass (dj_ops.video.decode_windows).
WINDOW_DECODERS = ("pyav",)


@dataclass(frozen=True, kw_only=True)
class WindowConfig:
    """Windows of long videos and their merge.

    :param seconds: window length in seconds (None: windows off).
    :param overlap: seconds neighbouring windows share (< ``seconds``).
    :param merge_model: the model that merges the window captions (None: the captioning model,
        given no video).
    :param merge_prompt: the merge instruction (None: ``captioning.merge.MERGE_INSTRUCTION``).
    """

    seconds: float | None = None
    overlap: float = 0.0
    merge_model: str | None = None
    merge_prompt: str | None = None

    @property
    def enabled(self) -> bool:
        return self.seconds is not None


def check_window_config(windows: WindowConfig, *, backend: str, capabilities: Capabilities,
                        decoder: str, video_start: float | None,
                        video_end: float | None) -> WindowConfig:
    """``windows`` when it can work with the op's other parameters and the backend's declared
    ``capabilities``.

    :raises ValueError: naming the fix.
    """
    if not windows.enabled:
        for name, value in (("window_overlap", windows.overlap or None),
                            ("merge_model", windows.merge_model),
                            ("merge_prompt", windows.merge_prompt)):
            if value is not None:
                raise ValueError(f"{name} needs window_seconds; set window_seconds or drop "
                                 f"{name}")
        return windows
    if not 0 <= windows.overlap < windows.seconds:
        raise ValueError(f"window_overlap ({windows.overlap}) must be >= 0 and smaller than "
                         f"window_seconds ({windows.seconds}); lower window_overlap")
    if decoder not in WINDOW_DECODERS:
        raise ValueError(f"window_seconds decodes with {list(WINDOW_DECODERS)} only, got "
                         f"decoder={decoder!r}; use decoder: pyav")
    if video_start is not None or video_end is not None:
        raise ValueError(refusal("windows", "video_range"))
    # A backend that serves another model without loading it (another model of the same
    # server); an in-process backend would have to load a second model: not built, refused.
    if windows.merge_model is not None and not capabilities.merge_model:
        raise ValueError(f"merge_model needs a backend that serves another model (openai), not "
                         f"{backend!r} (it would load a second model); drop merge_model to "
                         "merge with the captioning model")
    if not capabilities.sends_frames:
        raise ValueError(f"the {backend!r} backend as configured sends the whole file, not a "
                         "window's frames (video_transport 'path'); use video_transport: mp4 "
                         "with window_seconds")
    if windows.merge_prompt is not None and not windows.merge_prompt.strip():
        raise ValueError("merge_prompt is empty; give an instruction or leave it unset")
    return windows
