"""Output rows of the captioning op, turned into one entry per captioned (or failed) video (pure).

A row holds the op's record (``__dj__meta__.vlm_video_captioning``) and its caption text: after
each video token of the row's text, or in the ``caption_key`` field. What a person checks is a
video, so each video of a row becomes one :class:`VideoEntry`; in ``keep_candidate_mode: all``
the rows of one video's candidates (consecutive, ``candidate_index`` 0, 1, ...) become one entry
holding every candidate. Rows without a record (kept originals, rows without videos) are
skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from dj_ops.captioning.records import META_KEY, STATUS_ERROR

# Data-Juicer's defaults (Fields.meta, SpecialTokens), for the pure functions here and their
# tests; the op and dj-ops-report pass the values Data-Juicer runs with.
META_FIELD = "__dj__meta__"
VIDEO_TOKEN = "<__dj__video>"
EOC_TOKEN = "<|__dj__eoc|>"
REPETITION_FLAG = "repetition_trimmed"  # a loop was cut from the caption (record field)


@dataclass(frozen=True)
class TextLayout:
    """Where rows keep captions: the text's special tokens, or a caption field."""

    video_token: str = VIDEO_TOKEN
    eoc_token: str = EOC_TOKEN
    caption_key: str | None = None
    meta_field: str = META_FIELD
    text_key: str = "text"


@dataclass
class VideoEntry:
    """One video of the run, as the report shows it."""

    index: int  # the entry's place in the run's output order
    path: str
    status: str  # captioned | error
    model: str = ""
    backend: str = ""
    prompt: str = ""
    captions: list[str] = field(default_factory=list)  # every candidate kept for it
    caption_json: str = ""  # caption_format json: the document
    windows: list[dict] = field(default_factory=list)  # long videos: their window captions
    error_kind: str = ""
    error_message: str = ""
    flags: tuple[str, ...] = ()
    timestamps: list[float] = field(default_factory=list)
    frames: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)
    thumbnail: dict | None = None
    generated_tokens: int = 0
    hit_token_limit: bool = False
    from_store: bool = False
    run: dict = field(default_factory=dict)  # generation and candidate mode of its record

    @property
    def flagged(self) -> bool:
        return bool(self.flags)

    @property
    def failed(self) -> bool:
        return self.status == STATUS_ERROR


def record_of(row: dict, meta_field: str = META_FIELD) -> dict | None:
    """The op's record on a row (None: none)."""
    return (row.get(meta_field) or {}).get(META_KEY) or None


def row_captions(row: dict, videos: int, layout: TextLayout) -> list[list[str]]:
    """Per video of ``row``, its caption(s): from ``caption_key`` (a caption, or a list of
    candidates), else the text after each video token (one per video, special tokens removed).
    A text whose tokens do not match its videos gives every video the whole text.

    >>> row_captions({"text": "<__dj__video> a dog <|__dj__eoc|>"}, 1, TextLayout())
    [['a dog']]
    """
    if layout.caption_key is not None and layout.caption_key in row:
        values = list(row.get(layout.caption_key) or [])
        return [[str(c) for c in (v if isinstance(v, list) else [v]) if c]
                for v in values[:videos]] + [[] for _ in range(videos - len(values))]
    text = str(row.get(layout.text_key) or "")
    parts = text.split(layout.video_token)[1:]
    if len(parts) != videos:
        whole = _clean(text, layout)
        return [[whole] if whole else [] for _ in range(videos)]
    return [[c] if (c := _clean(part, layout)) else [] for part in parts]


def _clean(text: str, layout: TextLayout) -> str:
    return " ".join(text.replace(layout.eoc_token, " ").replace(layout.video_token, " ").split())


def video_entry(index: int, record: dict, video: dict, captions: list[str]) -> VideoEntry:
    """The entry of one ``video`` of a row's ``record``."""
    flags = tuple(str(f) for f in _items(video.get("quality_flags")))
    if video.get(REPETITION_FLAG):
        flags += (REPETITION_FLAG,)
    document = video.get("caption_json") or ""
    if document:
        try:  # indented for reading; kept as written when it is not valid JSON
            document = json.dumps(json.loads(document), indent=2, ensure_ascii=False)
        except ValueError:
            pass
    return VideoEntry(
        index=index, path=str(video.get("path") or ""), status=str(record.get("status")),
        model=str(record.get("model") or ""), backend=str(record.get("backend") or ""),
        prompt=str(record.get("prompt") or ""),
        captions=[] if record.get("status") == STATUS_ERROR else captions,
        caption_json=document, windows=[dict(w) for w in video.get("windows") or []],
        error_kind=str(video.get("error_kind") or ""),
        error_message=str(video.get("error_message") or ""), flags=flags,
        timestamps=[float(t) for t in _items(video.get("timestamps"))],
        frames=dict(video.get("frames") or {}), timing=dict(video.get("timing") or {}),
        thumbnail=video.get("thumbnail") if (video.get("thumbnail") or {}).get("image") else None,
        generated_tokens=int(video.get("generated_tokens") or 0),
        hit_token_limit=bool(video.get("hit_token_limit")),
        from_store=bool(video.get("from_store")),
        run={"generation": record.get("generation") or {},
             "keep_candidate_mode": record.get("keep_candidate_mode", "")})


def _items(value) -> list:
    """A list field of a record: a list once read from a file, a numpy array as the op builds
    it, None when absent."""
    return [] if value is None else list(value)


def iter_entries(rows: Iterable[dict], layout: TextLayout = TextLayout()) -> Iterator[VideoEntry]:
    """Every video of the op's rows, in output order; ``all`` mode's candidate rows of one
    video joined into one entry."""
    index = 0
    held: list[VideoEntry] = []  # the entries of the candidate rows being joined
    held_paths: tuple[str, ...] = ()
    for row in rows:
        record = record_of(row, layout.meta_field)
        if record is None:
            continue
        videos = list(record.get("videos") or [])
        captions = row_captions(row, len(videos), layout)
        candidate = int(record.get("candidate_index", -1))
        paths = tuple(str(v.get("path") or "") for v in videos)
        if held and (candidate <= 0 or paths != held_paths):
            yield from held
            held = []
        entries = []
        for video, caps in zip(videos, captions, strict=True):
            entries.append(video_entry(index, record, video, caps))
            index += 1
        if candidate < 0:
            yield from entries
        elif not held:
            held, held_paths = entries, paths
        else:  # a further candidate of the held videos
            index -= len(entries)
            for entry, new in zip(held, entries, strict=True):
                entry.captions.extend(new.captions)
                entry.flags = tuple(dict.fromkeys(entry.flags + new.flags))
    yield from held
