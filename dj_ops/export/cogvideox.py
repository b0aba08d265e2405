"""Export a captioned dataset for CogVideoX fine-tuning: ``prompt.txt`` and ``videos.txt``.

CogVideoX's fine-tuning scripts (``finetune/`` of THUDM/CogVideo, and cogvideox-factory) read two
aligned files under ``--data_root``: ``--caption_column prompt.txt`` with one caption per line and
``--video_column videos.txt`` with one video path per line, relative to the data root; blank lines
are dropped by their loaders, so every line here is non-empty. Rules:

- one line pair per captioned video: a row with several videos gives several lines, each video
  with its own caption (the text after its video token, or its entry of ``--caption-key``);
  a video with several kept candidates (mode 'all' into a caption field) gives one line each;
- newlines and runs of whitespace inside a caption become single spaces;
- video paths under the data root are written relative to it, others absolute (their loaders
  join ``data_root / line``, which keeps an absolute path as it is);
- rows whose record says ``error``, rows without videos, and videos without a caption are
  skipped and counted in the summary; videos that share a file stem are counted too, as
  CogVideoX caches latents by stem.

Captions are read from the text, or from the field ``--caption-key`` names; when the texts hold
none, the one field shaped like a caption field (one caption or candidate list per video) is
used. A run that reads rows but writes no pair exits 1 with the fix.

Structured captions (``caption_format: json``): ``--length NAME`` writes each video's rendering
of that name (its record's ``captions_by_length``) instead of the text's default length; a name
the export lacks exits 2 listing the ones it has.

Command line: ``dj-ops-export-cogvideox EXPORT -o DATA_ROOT [--caption-key caption]
[--length NAME]``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from data_juicer.utils.constant import Fields
from data_juicer.utils.mm_utils import SpecialTokens, get_special_tokens

from dj_ops.captioning.records import META_KEY, STATUS_ERROR
from dj_ops.captioning.text import captions_after_video_tokens
from dj_ops.export.dj_output import read_rows

PROMPT_FILE = "prompt.txt"
VIDEOS_FILE = "videos.txt"

SKIP_ERROR = "error_record"
SKIP_NO_VIDEOS = "no_videos"
SKIP_NO_CAPTION = "no_caption"
SKIP_TOKEN_MISMATCH = "token_video_mismatch"


@dataclass(frozen=True)
class Layout:
    """Where a row keeps its videos and captions."""

    video_key: str = "videos"
    text_key: str = "text"
    caption_key: str | None = None
    length: str | None = None  # a rendered length of structured captions (captions_by_length)


@dataclass
class Summary:
    """What an export wrote and skipped (``skipped`` counts videos; rows without videos, rows)."""

    rows: int = 0
    written: int = 0
    skipped: Counter = field(default_factory=Counter)
    shared_stems: int = 0
    detected_caption_key: str | None = None  # the caption field found, when none was named

    def lines(self) -> list[str]:
        skipped = ", ".join(f"{k}: {v}" for k, v in sorted(self.skipped.items())) or "none"
        found = ([f"captions read from the field {self.detected_caption_key!r} (detected; "
                  "--caption-key names another)"] if self.detected_caption_key else [])
        return [*found, f"rows read: {self.rows}", f"pairs written: {self.written}",
                f"skipped: {skipped}",
                f"videos sharing a file stem with another video: {self.shared_stems}"]

    def nothing_written(self) -> str:
        """Why an export that read rows wrote no pair, with the fix ('' when it wrote some)."""
        if self.written or not self.rows:
            return ""
        return ("no caption found: the texts hold none after their video tokens and no field "
                "holds one per video. Name the caption field with --caption-key FIELD (for "
                "dj-ops-caption output: --caption-key caption); rows with an error record "
                "are skipped.")


def flatten_caption(caption: str) -> str:
    """One line: every run of whitespace (newlines included) becomes one space; ends stripped."""
    return re.sub(r"\s+", " ", caption).strip()


def row_captions(row: dict, layout: Layout) -> list[list[str]] | str:
    """The captions of each video of ``row`` (a list per video), or the reason to skip it."""
    videos = list(row.get(layout.video_key) or [])
    if not videos:
        return SKIP_NO_VIDEOS
    record = (row.get(Fields.meta) or {}).get(META_KEY) or {}
    if record.get("status") == STATUS_ERROR:
        return SKIP_ERROR
    if layout.length:
        return length_captions(record, len(videos), layout.length)
    if layout.caption_key:
        found = list(row.get(layout.caption_key) or [])
    else:
        found = captions_after_video_tokens(row.get(layout.text_key) or "", SpecialTokens.video,
                                            list(get_special_tokens().values()))
    if len(found) != len(videos):
        return SKIP_TOKEN_MISMATCH if not layout.caption_key else SKIP_NO_CAPTION
    return [[c] if isinstance(c, str) else list(c or []) for c in found]


def length_captions(record: dict, num_videos: int, name: str) -> list[list[str]] | str:
    """The captions of each video at the rendered length ``name``, from the record's
    ``captions_by_length`` (caption_format json; for a mode that keeps every candidate the
    record lists them video by video).

    :raises ValueError: the export has no such length (the message lists those it has).
    """
    entries = record.get("videos") or []
    if not entries or len(entries) % num_videos:
        return SKIP_NO_CAPTION
    per_video = len(entries) // num_videos
    lengths = [entry.get("captions_by_length") or {} for entry in entries]
    missing = [available for available in lengths if name not in available]
    if missing:
        available = sorted(missing[0])
        raise ValueError(f"--length {name!r} is not a rendered length of this export; "
                         + (f"choose one of {available}" if available else
                            "its records have none (captions made with caption_format: json "
                            "have them)"))
    return [[lengths[v * per_video + i][name] for i in range(per_video)]
            for v in range(num_videos)]


def _text_captions(row: dict, layout: Layout) -> list[str]:
    """The non-empty captions after the video tokens of the row's text."""
    found = captions_after_video_tokens(row.get(layout.text_key) or "", SpecialTokens.video,
                                        list(get_special_tokens().values()))
    return [c for c in found if c]


def _holds_captions(value, videos: list) -> bool:
    """Whether ``value`` is shaped like a caption field: one caption, or one list of
    candidates, per video."""
    return isinstance(value, list) and len(value) == len(videos) and all(
        isinstance(c, str) or (isinstance(c, list) and all(isinstance(x, str) for x in c))
        for c in value)


def detect_caption_key(rows: Iterable[dict], layout: Layout) -> str | None:
    """The field the captions are in, for an export whose texts hold none (``caption_key``
    output, e.g. ``dj-ops-caption``'s ``caption``): the one field besides the text, the videos
    and Data-Juicer's own that has one caption (or list of candidates) per video in every row
    holding it. None when the texts hold captions or no field does.

    :raises ValueError: when several fields could hold the captions.
    """
    shaped: dict[str, bool] = {}
    for row in rows:
        videos = list(row.get(layout.video_key) or [])
        if not videos:
            continue
        if _text_captions(row, layout):
            return None
        for key, value in row.items():
            if key in (layout.text_key, layout.video_key) or key.startswith("__dj__"):
                continue
            shaped[key] = shaped.get(key, True) and _holds_captions(value, videos)
    fields_found = sorted(key for key, ok in shaped.items() if ok)
    if len(fields_found) > 1:
        raise ValueError(f"captions may be in any of the fields {fields_found}: choose one with "
                         "--caption-key")
    return fields_found[0] if fields_found else None


def relative_video_path(video: str, data_root: Path, video_root: Path) -> str:
    """``video`` relative to ``data_root`` when it lies under it, else absolute."""
    path = Path(video) if os.path.isabs(video) else video_root / video
    path = Path(os.path.abspath(path))
    try:
        return path.relative_to(data_root).as_posix()
    except ValueError:
        return path.as_posix()


def pairs_of(rows: Iterable[dict], layout: Layout, data_root: Path, video_root: Path,
             summary: Summary) -> list[tuple[str, str]]:
    """``(caption, video path)`` lines of ``rows``; what is skipped is counted in ``summary``."""
    pairs = []
    for row in rows:
        summary.rows += 1
        videos = list(row.get(layout.video_key) or [])
        captions = row_captions(row, layout)
        if isinstance(captions, str):
            summary.skipped[captions] += max(1, len(videos))
            continue
        for video, candidates in zip(videos, captions):
            lines = [flatten_caption(c) for c in candidates if isinstance(c, str)]
            lines = [c for c in lines if c]
            if not lines:
                summary.skipped[SKIP_NO_CAPTION] += 1
            path = relative_video_path(video, data_root, video_root)
            pairs.extend((c, path) for c in lines)
    return pairs


def count_shared_stems(paths: Iterable[str]) -> int:
    """How many distinct paths share their file stem with another distinct path."""
    stems = Counter(Path(p).stem for p in set(paths))
    return sum(n for n in stems.values() if n > 1)


def export_cogvideox(source: str | Path, data_root: str | Path, layout: Layout | None = None,
                     video_root: str | Path = ".", prompt_file: str = PROMPT_FILE,
                     videos_file: str = VIDEOS_FILE) -> Summary:
    """Write ``prompt_file`` and ``videos_file`` under ``data_root`` from a dj-process export
    (a jsonl file or a Ray directory of shards) and return the summary."""
    root = Path(os.path.abspath(data_root))
    summary = Summary()
    layout = layout or Layout()
    if layout.caption_key is None and layout.length is None:
        summary.detected_caption_key = detect_caption_key(read_rows(source), layout)
        layout = replace(layout, caption_key=summary.detected_caption_key)
    pairs = pairs_of(read_rows(source), layout, root, Path(video_root), summary)
    summary.written = len(pairs)
    summary.shared_stems = count_shared_stems(video for _, video in pairs)
    root.mkdir(parents=True, exist_ok=True)
    (root / prompt_file).write_text("".join(c + "\n" for c, _ in pairs), encoding="utf-8")
    (root / videos_file).write_text("".join(v + "\n" for _, v in pairs), encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dj-ops-export-cogvideox", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="dj-process export: a jsonl file or a directory of shards")
    parser.add_argument("-o", "--data-root", required=True,
                        help="folder to write the two files into (CogVideoX's --data_root)")
    parser.add_argument("--caption-key", help="read captions from this field (caption_key "
                                              "output) instead of from the text")
    parser.add_argument("--length", help="structured captions (caption_format: json): write "
                                         "the rendered length of this name (a key of the "
                                         "records' captions_by_length) instead of the text")
    parser.add_argument("--video-key", default="videos")
    parser.add_argument("--text-key", default="text")
    parser.add_argument("--video-root", default=".",
                        help="folder that relative video paths of the export are relative to")
    parser.add_argument("--prompt-file", default=PROMPT_FILE)
    parser.add_argument("--videos-file", default=VIDEOS_FILE)
    args = parser.parse_args(argv)
    layout = Layout(args.video_key, args.text_key, args.caption_key, args.length)
    try:
        summary = export_cogvideox(args.source, args.data_root, layout, args.video_root,
                                   args.prompt_file, args.videos_file)
    except (FileNotFoundError, ValueError) as error:
        print(f"dj-ops-export-cogvideox: {error}", file=sys.stderr)
        return 2
    for line in summary.lines():
        print(line)
    if summary.nothing_written():
        print(f"dj-ops-export-cogvideox: {summary.nothing_written()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
