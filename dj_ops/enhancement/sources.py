"""Where the captioning op's captions are in a row, and where their rewrites go (pure).

Captions are found as ``dj-ops-export-cogvideox`` finds them (one reader:
:func:`dj_ops.export.cogvideox.row_captions`): the text after each video token of a generated
sample, or the caption field (``caption_key``: one caption, or one list of kept candidates, per
video). Window captions (``window_seconds``) are read from the captioning record's ``windows``
entries. Only rows the captioning op captioned are rewritten (its record's status
``captioned``): originals kept before their generated rows, rows without videos, rows it failed
and rows of other sources pass through.

Each caption to rewrite is a :class:`Slot` (video, candidate, window). The rewrites go into
fields, never into the text (whose special tokens must stay as the captioning op wrote them),
and never over the caption: ``enhanced_key`` (default ``<caption_key>_enhanced``, or
``caption_enhanced`` for generated text samples) has the caption field's shape (per video a
rewrite, or a list of rewrites in mode 'all'); ``<enhanced_key>_windows`` per video one rewrite
per window. An empty caption (a window that failed) gets an empty rewrite and no record entry;
a captioned row none of whose captions is found (read from the text when the captioning op
wrote a field, or from the wrong field) fails with ``no_caption``, naming ``caption_key``.

The captioning record does not say which layout its op wrote, so one misconfiguration cannot
be told from a correct one: a caption field (the captioning op's ``caption_key``) read as text
when the original texts held words after their video tokens (``"<video> a cat"``) finds those
words. Such rows are flagged (``suspect_fields``: caption-shaped fields beside text captions)
and the op warns, naming the field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dj_ops.captioning.records import META_KEY, STATUS_CAPTIONED
from dj_ops.export.cogvideox import SKIP_TOKEN_MISMATCH, Layout, _holds_captions, row_captions

T = TypeVar("T")
DEFAULT_SOURCE_FIELD = "caption"  # names the enhanced field for generated text samples
ENHANCED_SUFFIX = "_enhanced"
WINDOWS_SUFFIX = "_windows"
NO_CAPTION = "no_caption"  # a captioned row whose captions cannot be found where configured
PASS, FAIL, REWRITE = "pass", "fail", "rewrite"


@dataclass(frozen=True, kw_only=True)
class SourceLayout:
    """Where a row keeps its text, videos, meta and captions, and where rewrites go."""

    text_key: str = "text"
    video_key: str = "videos"
    meta_key: str = "__dj__meta__"
    caption_key: str | None = None  # None: the text after each video token
    enhanced_key: str | None = None  # None: <caption_key or 'caption'>_enhanced
    windows: bool = False  # also rewrite each window's caption

    @property
    def output_key(self) -> str:
        return self.enhanced_key or f"{self.caption_key or DEFAULT_SOURCE_FIELD}{ENHANCED_SUFFIX}"

    @property
    def windows_key(self) -> str:
        return f"{self.output_key}{WINDOWS_SUFFIX}"


@dataclass(frozen=True)
class Slot:
    """One caption of a row: its video, its candidate (mode 'all' in a caption field; else 0)
    and its window (-1: the video's caption), and the text to rewrite."""

    video: int
    candidate: int
    window: int
    text: str

    @property
    def place(self) -> tuple[int, int, int]:
        return self.video, self.candidate, self.window


@dataclass
class RowPlan:
    """What to do with one row: ``pass`` it through, ``fail`` it (``error``: kind, message) or
    ``rewrite`` its slots; ``candidates`` per video (None: one caption, n: a list of n) and
    ``windows`` per video (how many) give the output fields their shape."""

    kind: str
    slots: list[Slot] = field(default_factory=list)
    candidates: list[int | None] = field(default_factory=list)
    windows: list[int] = field(default_factory=list)
    error: tuple[str, str] = ("", "")
    # read from the text, yet the row holds fields shaped like a caption field (one caption or
    # list of candidates per video): the captioning op may have written one of them, and the
    # text then holds the original chunk texts (see :func:`caption_fields`)
    suspect_fields: tuple[str, ...] = ()


def _missing_message(found: str, layout: SourceLayout, videos: int) -> str:
    if found == SKIP_TOKEN_MISMATCH and layout.caption_key is None:
        return (f"the text does not hold a caption after each of its {videos} video token(s); "
                "if the captioning op wrote a caption field, set caption_key to that field")
    return (f"the field {layout.caption_key!r} does not hold one caption (or list of "
            f"candidates) per video ({videos}); set caption_key to the captioning op's")


def _window_captions(record: dict, video: int, videos: int) -> list[str]:
    """The captions of one video's windows in the captioning record (none: windows off)."""
    entries = record.get("videos") or []
    if not entries or len(entries) % videos:
        return []
    per_video = len(entries) // videos  # a caption field in mode 'all' lists each candidate
    return [w.get("caption") or "" for w in entries[video * per_video].get("windows") or []]


def never_captioned(row: dict, layout: SourceLayout) -> bool:
    """Whether ``row`` has videos but the captioning op never ran on it (its meta has no key of
    that op at all; the op writes None there for the rows it passes, originals included)."""
    return bool(row.get(layout.video_key)) and META_KEY not in (row.get(layout.meta_key) or {})


def caption_fields(row: dict, layout: SourceLayout, videos: list) -> tuple[str, ...]:
    """The fields of ``row`` shaped like a caption field (the export's test of one), besides
    the text, videos, meta and the op's own output fields."""
    skip = {layout.text_key, layout.video_key, layout.meta_key, layout.output_key,
            layout.windows_key}
    return tuple(key for key, value in row.items()
                 if key not in skip and not key.startswith("__dj__")
                 and _holds_captions(value, videos))


def plan_row(row: dict, layout: SourceLayout) -> RowPlan:
    """The captions of ``row`` to rewrite (see the module's doc)."""
    videos = list(row.get(layout.video_key) or [])
    record = (row.get(layout.meta_key) or {}).get(META_KEY)
    if not videos or not record or record.get("status") != STATUS_CAPTIONED:
        return RowPlan(PASS)
    found = row_captions(row, Layout(layout.video_key, layout.text_key, layout.caption_key))
    if isinstance(found, str) or not any(c.strip() for per_video in found for c in per_video):
        why = found if isinstance(found, str) else SKIP_TOKEN_MISMATCH  # read where none are
        return RowPlan(FAIL, error=(NO_CAPTION, _missing_message(why, layout, len(videos))))
    plan = RowPlan(REWRITE, suspect_fields=() if layout.caption_key else caption_fields(
        row, layout, videos))
    for v, candidates in enumerate(found):
        listed = layout.caption_key and isinstance(row[layout.caption_key][v], list)
        plan.candidates.append(len(candidates) if listed else None)
        plan.slots += [Slot(v, i, -1, text) for i, text in enumerate(candidates)]
        windows = _window_captions(record, v, len(videos)) if layout.windows else []
        plan.windows.append(len(windows))
        plan.slots += [Slot(v, 0, w, text) for w, text in enumerate(windows)]
    plan.slots = [slot for slot in plan.slots if slot.text.strip()]
    return plan


def shaped(plan: RowPlan, value: Callable[[tuple[int, int, int]], T | None],
           blank: T) -> tuple[list[Any], list[list[T]]]:
    """The row's output fields: per video its caption's value (a list for a video with
    ``candidates``) and its windows' values, ``value(place)`` or ``blank`` where it gives None
    (``([], [])`` for a row passed through or failed before any slot)."""
    def at(place: tuple[int, int, int]) -> T:
        found = value(place)
        return blank if found is None else found

    captions = [at((v, 0, -1)) if n is None else [at((v, i, -1)) for i in range(n)]
                for v, n in enumerate(plan.candidates)]
    windows = [[at((v, 0, w)) for w in range(n)] for v, n in enumerate(plan.windows)]
    return captions, windows
