"""The text-only pass that turns a video's timestamped window captions into one caption (pure).

The prompt lists the windows in order, each as ``[start s - end s] caption``, so the model sees
where each description belongs in time and that neighbouring windows overlap (an event told in
two windows is one event). It asks for one description of the whole video that keeps the order
of events, names each person or object the same way throughout (windows captioned apart may
call one person "a man" and later "the cyclist"), and drops what the overlaps repeat. Times are
given to the model as context; the merged caption mentions them only where the order needs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MERGE_INSTRUCTION = (
    "These are descriptions of consecutive, partly overlapping segments of one video, with "
    "their times in seconds. Write one description of the whole video. Keep the order of "
    "events. Call each person, animal or object by the same words throughout, even where the "
    "segments name it differently, and tell an event seen in two overlapping segments once. "
    "Do not describe the segments one by one and do not invent what no segment says."
)


@dataclass(frozen=True)
class WindowCaption:
    """One window's caption and its span in seconds."""

    start: float
    end: float
    caption: str


def format_windows(windows: Sequence[WindowCaption]) -> str:
    """One line per window, in time order.

    >>> format_windows([WindowCaption(0, 10, "A dog runs."), WindowCaption(8, 15.5, "It sits.")])
    '[0.0 s - 10.0 s] A dog runs.\\n[8.0 s - 15.5 s] It sits.'
    """
    ordered = sorted(windows, key=lambda w: (w.start, w.end))
    return "\n".join(f"[{w.start:.1f} s - {w.end:.1f} s] {' '.join(w.caption.split())}"
                     for w in ordered)


def merge_prompt(windows: Sequence[WindowCaption], instruction: str = MERGE_INSTRUCTION) -> str:
    """The user message of the merge pass; windows that failed (no caption) are left out.

    :raises ValueError: when no window has a caption (nothing to merge).
    """
    captioned = [w for w in windows if w.caption.strip()]
    if not captioned:
        raise ValueError("no window of the video has a caption to merge")
    return f"{instruction}\n\n{format_windows(captioned)}"
