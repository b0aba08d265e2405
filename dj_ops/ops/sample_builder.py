"""Per-batch bookkeeping of the captioning op: samples in, video slots out, new samples back.

A :class:`SampleBuilder` reads a Data-Juicer batch (dict of lists), plans each sample's chunks,
lists the videos to caption, collects candidates or failures per video, and assembles the output
batch: for each input row, the rows its output mode's writer (:mod:`dj_ops.ops.writers`) makes
of it, or per ``on_error`` the original with an error record. Every input row is accounted for.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from data_juicer.ops.base_op import convert_dict_list_to_list_dict

from dj_ops.captioning.records import (
    META_KEY,
    STATUS_ERROR,
    RunInfo,
    VideoOutcome,
    build_record,
)
from dj_ops.captioning.requests import Candidate
from dj_ops.captioning.selection import select_per_sample, usable_candidates
from dj_ops.captioning.text import (
    Chunk,
    TextLayoutError,
    chunk_reference_texts,
    plan_chunks,
)
from dj_ops.ops.config import OutputPolicy, TextLayout
from dj_ops.ops.report_fields import ReportFields
from dj_ops.ops.structured_config import ERROR_INVALID_JSON, StructuredConfig
from dj_ops.ops.writers import CaptionedRow, OutputWriter, writer_for
from dj_ops.runtime.progress import CAPTIONED, FAILED, REUSED
from dj_ops.video.budget import frames_record
from dj_ops.video.decode import DecodedVideo
from dj_ops.video.thumbnails import ThumbnailSettings

ERROR_INVALID_PROMPT = "invalid_prompt"
ERROR_EMPTY_CAPTION = "empty_caption"


class CaptioningError(RuntimeError):
    """Raised with ``on_error='raise'`` when a sample fails."""


@dataclass(frozen=True)
class VideoSlot:
    """One video of one sample to caption."""

    row: int
    video: int
    path: str
    prompt: str


@dataclass
class _Row:
    sample: dict
    videos: list[str]
    chunks: list[Chunk] = field(default_factory=list)
    prompt: str = ""
    sample_failure: VideoOutcome | None = None  # the whole sample (prompt, text layout)
    failures: dict[int, VideoOutcome] = field(default_factory=dict)  # per video
    # per video: (candidates, timestamps, reused from a result store)
    candidates: dict[int, tuple[list[Candidate], tuple[float, ...], bool]] = field(
        default_factory=dict)
    frames: dict[int, dict] = field(default_factory=dict)  # per video: what it was decoded at
    windows: dict[int, tuple] = field(default_factory=dict)  # per video, windows on

    @property
    def failed(self) -> bool:
        return self.sample_failure is not None or bool(self.failures)

    def all_failures(self) -> list[VideoOutcome]:
        first = [self.sample_failure] if self.sample_failure else []
        return first + [self.failures[v] for v in sorted(self.failures)]


class SampleBuilder:
    """Collects one batch's captions and failures, then builds the output batch."""

    def __init__(self, samples: dict, layout: TextLayout,
                 structured: StructuredConfig | None = None, windowed: bool = False,
                 on_video: Callable[[str], None] = lambda outcome: None,
                 thumbnails: ThumbnailSettings | None = None, timing: bool = False):
        self.on_video = on_video  # told as each video finishes (dj_ops.runtime.progress)
        self.keys = list(samples.keys())
        self.report = ReportFields(thumbnails, timing)  # timing and strips, for the report
        self.layout = layout
        self.structured = structured  # caption_format json: candidates are JSON documents
        self.windowed = windowed  # every video record gets a "windows" list
        rows = convert_dict_list_to_list_dict(samples) if samples else []
        self.rows = [_Row(s, list(s.get(layout.video_key) or [])) for s in rows]
        for row in self.rows:
            self._plan(row)

    def _plan(self, row: _Row) -> None:
        layout = self.layout
        if not row.videos:
            return
        row.prompt = layout.default_prompt
        if layout.prompt_key:
            value = row.sample.get(layout.prompt_key)
            if not isinstance(value, str) or not value.strip():
                row.sample_failure = VideoOutcome(
                    "", error_kind=ERROR_INVALID_PROMPT, windows=self._windows(row, -1),
                    error_message=f"prompt_key {layout.prompt_key!r} must hold a non-empty "
                                  f"string, got {value!r}")
                return
            row.prompt = value
        try:
            row.chunks = plan_chunks(row.sample.get(layout.text_key) or "", len(row.videos),
                                     layout.video_token, layout.eoc_token,
                                     list(layout.special_tokens))
        except TextLayoutError as error:
            row.sample_failure = VideoOutcome("", error_kind=error.kind, error_message=str(error),
                                              windows=self._windows(row, -1))

    def video_slots(self) -> list[VideoSlot]:
        """Every video of every sample that is still to be captioned."""
        return [
            VideoSlot(r, v, path, row.prompt)
            for r, row in enumerate(self.rows) if not row.failed
            for v, path in enumerate(row.videos)
        ]

    def _windows(self, row: _Row, video: int) -> tuple | None:
        """What a video's record lists as its windows (None: windows off)."""
        return row.windows.get(video, ()) if self.windowed else None

    def set_windows(self, slot: VideoSlot, windows) -> None:
        """The video's windows (``WindowOutcome`` each: ``dj_ops.ops.windowed``, or a result
        store), for its record."""
        self.rows[slot.row].windows[slot.video] = tuple(windows)
        self.report.windows_done((slot.row, slot.video))

    def note_window(self, slot: VideoSlot, window) -> None:
        """One window of a long video (a ``WindowVideo``), for the video's strip."""
        self.report.window((slot.row, slot.video), slot.path, window)

    def windows_of(self, slot: VideoSlot) -> tuple | None:
        """The slot's windows so far (None: windows off)."""
        return self._windows(self.rows[slot.row], slot.video)

    def fail_video(self, slot: VideoSlot, kind: str, message: str,
                   candidate: Candidate | None = None) -> None:
        """The video failed; ``candidate``: what was generated for it (its token facts and
        attempts go in the record)."""
        row = self.rows[slot.row]
        self.report.finished((slot.row, slot.video))
        facts = {} if candidate is None else {
            "generated_tokens": candidate.num_tokens, "hit_token_limit": candidate.hit_token_limit,
            "attempts": candidate.attempts}
        row.failures[slot.video] = VideoOutcome(
            slot.path, error_kind=kind, error_message=message,
            windows=self._windows(row, slot.video), **facts,
            **self.report.of((slot.row, slot.video)))
        self.on_video(FAILED)

    def note_frames(self, slot: VideoSlot, video: DecodedVideo) -> None:
        """What the slot's decoded ``video`` holds, for its record (``frames``)."""
        self.set_frames(slot, frames_record(video.frames.shape, video.frame_budget))
        self.report.decoded((slot.row, slot.video), slot.path, video)

    def note_generation(self, slot: VideoSlot, seconds: float) -> None:
        """The slot's share of a backend call's wall time (its record's ``timing``)."""
        self.report.generated((slot.row, slot.video), seconds)

    def set_frames(self, slot: VideoSlot, record: dict) -> None:
        """The slot's ``frames`` record (from :meth:`note_frames`, or a result store)."""
        self.rows[slot.row].frames[slot.video] = record

    def frames_of(self, slot: VideoSlot) -> dict:
        """The slot's ``frames`` record so far ({} when none was noted)."""
        return self.rows[slot.row].frames.get(slot.video, {})

    def set_candidates(self, slot: VideoSlot, candidates: list[Candidate],
                       timestamps: list[float], from_store: bool = False) -> None:
        """The video's candidates as the quality gate kept them (``from_store``: reused from a
        result store); nothing is decided about them here."""
        self.report.finished((slot.row, slot.video))
        self.rows[slot.row].candidates[slot.video] = (list(candidates), tuple(timestamps),
                                                      from_store)
        self.on_video(REUSED if from_store else CAPTIONED)

    def build(self, run: RunInfo, policy: OutputPolicy,
              rng: random.Random) -> tuple[dict, list[dict | None]]:
        """The output batch as a dict of lists (the input's keys plus the meta field, and the
        caption field), and per input row its record (a generated row's, or the error record,
        also for a dropped row; None for a row without videos): what the op's tally counts.

        Per input row, in input order: a row without videos passes through; a failed row is
        kept with an error record, dropped or raised, per ``on_error``; a captioned row
        becomes the rows of its output mode's writer.
        """
        writer = writer_for(self.layout, policy, self.structured)
        out: list[dict] = []
        records: list[dict | None] = []
        for row in self.rows:
            if not row.videos:
                out.append(writer.without_videos(row.sample))
                records.append(None)
                continue
            captioned = None if row.failed else self._captioned(row, policy.mode, rng)
            if captioned is None:
                failures = row.all_failures()
                if self.structured is not None:  # the same record fields as a captioned row's
                    blank = self.structured.blank_fields()
                    failures = [replace(f, structured=blank) for f in failures]
                record = build_record(STATUS_ERROR, run, row.prompt, failures, -1)
                out.extend(self._failed_rows(row, record, policy.on_error, writer))
            else:
                rows = writer.captioned(captioned, run)
                out.extend(rows)
                record = rows[-1][self.layout.meta_key][META_KEY]
            records.append(record)
        return self._to_columns(out, *writer.fields), records

    def _captioned(self, row: _Row, mode: str, rng: random.Random) -> CaptionedRow | None:
        """The row's kept candidates, the unusable ones (empty, or not a valid document) left
        out and recorded (``dropped_candidates``); None (and failures recorded, with the token
        facts of the candidate that failed) when a video has no usable caption."""
        index = next(i for i, r in enumerate(self.rows) if r is row)  # its report fields' key
        rendered = [[self._render(c.text) for c in row.candidates[v][0]]
                    for v in range(len(row.videos))]
        texts = [[text for text, _ in per_video] for per_video in rendered]
        usable = usable_candidates(mode, texts)
        dropped = [[_dropped(i, c, rendered[v][i][1]) for i, c in enumerate(row.candidates[v][0])
                    if i not in usable[v]] for v in range(len(row.videos))]
        for v in [v for v, indices in enumerate(usable) if not indices]:
            first = row.candidates[v][0][0] if row.candidates[v][0] else None
            why = rendered[v][0][1] if rendered[v] else None
            row.failures[v] = VideoOutcome(
                row.videos[v], error_kind=ERROR_INVALID_JSON if isinstance(why, str)
                else ERROR_EMPTY_CAPTION,
                error_message=why if isinstance(why, str) else (
                    "the model generated an empty caption" if texts[v] and not any(texts[v])
                    else "no candidate index is usable for every video of the sample"),
                generated_tokens=first.num_tokens if first else 0,
                hit_token_limit=first.hit_token_limit if first else False,
                windows=self._windows(row, v), attempts=first.attempts if first else (),
                dropped=tuple(dropped[v]), **self.report.of((index, v)))
        if row.failures:
            return None
        references = chunk_reference_texts(row.chunks, len(row.videos),
                                           list(self.layout.special_tokens))
        picks = select_per_sample(mode, [[texts[v][i] for i in usable[v]] for v in
                                         range(len(row.videos))], references, rng)
        picks = [[usable[v][i] for v, i in enumerate(per_video)] for per_video in picks]
        outcomes = [[_outcome(path, candidate, *row.candidates[v][1:], row.frames.get(v, {}),
                              self._windows(row, v), rendered[v][i][1], tuple(dropped[v]),
                              self.report.of((index, v)))
                     for i, candidate in enumerate(row.candidates[v][0])]
                    for v, path in enumerate(row.videos)]
        return CaptionedRow(row.sample, row.chunks, row.prompt, texts, outcomes, picks)

    def _render(self, text: str) -> tuple[str, dict | str | None]:
        """A candidate's caption text and, in json mode, its record fields, or why it is not
        a valid document (its text then "": not usable)."""
        if self.structured is None:
            return text, None
        try:
            rendered = self.structured.render(text)
        except ValueError as error:
            return "", str(error)
        return rendered.text, rendered.fields

    @staticmethod
    def _failed_rows(row: _Row, record: dict, on_error: str,
                     writer: OutputWriter) -> list[dict]:
        """``on_error`` applied to a failed row: raised, dropped, or kept with its record."""
        if on_error == "raise":
            details = "; ".join(f"{f.path or 'sample'}: {f.error_kind}: {f.error_message}"
                                for f in row.all_failures())
            raise CaptioningError(f"captioning failed for a sample: {details}")
        return [] if on_error == "drop" else [writer.failed(row.sample, record)]

    def _to_columns(self, rows: list[dict], *fields: str) -> dict:
        """Columns of ``rows``. Every row's meta holds the op's key, None where the op wrote no
        record (originals, rows without videos): datasets types a batch that mixes rows with
        and without the record as Json, and batches without such rows as a struct, so the
        shards of one job could not be joined."""
        meta_key = self.layout.meta_key
        extra = [k for k in (meta_key, *fields) if k and k not in self.keys]
        keys = self.keys + extra
        columns = {k: [r.get(k) for r in rows] for k in keys}
        columns[meta_key] = [
            meta if meta and META_KEY in meta else {**(meta or {}), META_KEY: None}
            for meta in columns[meta_key]
        ]
        return columns


def _outcome(path: str, candidate: Candidate, timestamps: tuple[float, ...],
             from_store: bool, frames: dict, windows: tuple | None,
             structured: dict | str | None, dropped: tuple[str, ...] = (),
             report: dict | None = None) -> VideoOutcome:
    return VideoOutcome(path, timestamps, candidate.num_tokens, candidate.hit_token_limit,
                        repetition_trimmed=candidate.repetition_trimmed, from_store=from_store,
                        decoding=candidate.decoding, batching=candidate.batching,
                        attempts=candidate.attempts,
                        frames=frames, windows=windows, dropped=dropped,
                        structured=structured if isinstance(structured, dict) else None,
                        **(report or {}))


def _dropped(index: int, candidate: Candidate, why: dict | str | None) -> str:
    """One left-out candidate in a record: its index, why, and its token facts."""
    reason = (f"{ERROR_INVALID_JSON}: {why}" if isinstance(why, str) else
              "empty" if not candidate.text.strip() else
              "not usable for every video of the sample")
    limit = ", token limit hit" if candidate.hit_token_limit else ""
    return f"candidate {index}: {reason} ({candidate.num_tokens} tokens{limit})"

