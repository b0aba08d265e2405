"""The report as one HTML file, written with Jinja2 (templates in ``templates/``).

Everything the page needs is inside it: the style sheet and the filter script inlined, the
charts as SVG data URLs, the frame strips as JPEG data URLs. It loads nothing, so it opens
offline and can be mailed or attached as it is. Jinja2 escapes every value from the records
(captions are model output: a caption holding ``<script>`` is shown, not run).

Each gallery card is rendered on its own, so that the page keeps to a size bound: cards past
``max_bytes`` are left out, and the page says how many.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from dj_ops.report.charts import Chart
from dj_ops.report.entries import VideoEntry
from dj_ops.report.sampling import Shown, kind_of

TEMPLATES = Path(__file__).with_name("templates")
DEFAULT_MAX_BYTES = 16_000_000  # the gallery's share of a report, at most
MAX_TEXT_CHARS = 4000  # of one caption, document or error message shown in a card


@dataclass(frozen=True)
class PageParts:
    """What the page shows, apart from the gallery."""

    title: str
    source: str
    counts: list[tuple[str, object]]
    settings: list[tuple[str, str]]
    charts: list[Chart]
    warnings: list[str]
    warning_count: int


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(
        enabled_extensions=("html", "j2"), default_for_string=True))
    env.filters["b64"] = lambda text: base64.b64encode(text.encode("utf-8")).decode("ascii")
    return env


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS] + " …"


def card_view(entry: VideoEntry) -> dict:
    """What the card template reads of an entry."""
    thumbnail = entry.thumbnail
    times = [float(t) for t in (thumbnail or {}).get("timestamps", [])]
    captions = [_cut(c) for c in entry.captions]
    windows = [{**w, "caption": _cut(str(w.get("caption", "")))} for w in entry.windows]
    search = " ".join([entry.path, entry.error_kind, entry.error_message, *captions,
                       entry.caption_json, *(w["caption"] for w in windows)]).lower()
    return {**vars(entry), "kind": kind_of(entry), "captions": captions,
            "caption_json": _cut(entry.caption_json), "windows": windows,
            "error_message": _cut(entry.error_message), "search_text": search,
            "strip_times": times,
            "strip_width": (thumbnail or {}).get("width", 0) * max(1, len(times))}


def render_cards(shown: Shown, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[list[str], int]:
    """The gallery's cards, in order, within ``max_bytes``; and how many were left out."""
    macro = _environment().get_template("card.html.j2").module.card
    cards, size = [], 0
    for position, entry in enumerate(shown.entries):
        html = str(macro(card_view(entry)))
        if size + len(html) > max_bytes:
            return cards, len(shown.entries) - position
        cards.append(html)
        size += len(html)
    return cards, 0


def sampled_line(shown: Shown, cards: int, left_out: int) -> str:
    """How the shown videos were chosen, in one sentence."""
    total, picked = shown.total, shown.shown
    line = (f"{cards} of {sum(total.values())} videos shown: {picked['failed']} of "
            f"{total['failed']} failed, {picked['flagged']} of {total['flagged']} flagged, "
            f"{picked['other']} of {total['other']} others (failed and flagged first, then a "
            "random choice).")
    if left_out:
        line += f" {left_out} more were chosen but left out to keep the page small."
    return line


def render_page(parts: PageParts, shown: Shown, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """The whole report page."""
    env = _environment()
    cards, left_out = render_cards(shown, max_bytes)
    flags = sorted({f for e in shown.entries for f in e.flags})
    statuses = sorted({e.status for e in shown.entries})
    return env.get_template("report.html.j2").render(
        **vars(parts), cards=cards, flags=flags, statuses=statuses,
        sampled=sampled_line(shown, len(cards), left_out),
        built=time.strftime("%Y-%m-%d %H:%M:%S"),
        css=(TEMPLATES / "report.css").read_text(encoding="utf-8"),
        js=(TEMPLATES / "report.js").read_text(encoding="utf-8"))


def settings_text(value) -> str:
    """A setting's value as one line."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                           default=str)
