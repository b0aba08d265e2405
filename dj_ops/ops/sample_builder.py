"""Per-batch bookkeeping of the captioning op: samples in, video slots out, new samples back.

A :class:`SampleBuilder` reads a Data-Juicer batch (dict of lists), plans each sample's chunks,
lists the videos to caption, collects candidates or failures per video, and assembles the output
batch: for each input row, its original (when kept) followed by its generated rows, or the
original with an error record. Every input row is accounted for.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from data_juicer.ops.base_op import convert_dict_list_to_list_dict

from dj_ops.backends.base import Candidate
from dj_ops.captioning.records import (
    META_KEY,
    STATUS_CAPTIONED,
    STATUS_ERROR,
    RunInfo,
    VideoOutcome,
    build_record,
    with_record,
)
from dj_ops.captioning.repetition import trim_repetition
from dj_ops.captioning.selection import select_per_sample
from dj_ops.captioning.text import (
    Chunk,
    TextLayoutError,
    chunk_reference_texts,
    plan_chunks,
    render_text,
)

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
    chunks: list[Chunk] = field(default_factory=list)
    prompt: str = ""
    failures: dict[int, VideoOutcome] = field(default_factory=dict)
    # per video: (candidates, timestamps, reused from a result store)
    candidates: dict[int, tuple[list[Candidate], tuple[float, ...], bool]] = field(
        default_factory=dict)

    @property
    def failed(self) -> bool:
        return bool(self.failures)


class SampleBuilder:
    """Collects one batch's captions and failures, then builds the output batch."""

    def __init__(self, samples: dict, *, text_key: str, video_key: str, meta_key: str,
                 video_token: str, eoc_token: str, special_tokens: list[str],
                 prompt_key: str | None, default_prompt: str):
        self.keys = list(samples.keys())
        self.meta_key = meta_key
        self.text_key, self.video_key = text_key, video_key
        self.video_token, self.eoc_token = video_token, eoc_token
        self.special_tokens = special_tokens
        self.rows = [_Row(s) for s in convert_dict_list_to_list_dict(samples)] if samples else []
        # After build(): per input row, its record (a generated row's, or the error record, also
        # for a dropped row), None for a row without videos. What the op's run summary counts.
        self.records: list[dict | None] = []
        for row in self.rows:
            self._plan(row, prompt_key, default_prompt)

    def _videos(self, row: _Row) -> list[str]:
        return list(row.sample.get(self.video_key) or [])

    def _plan(self, row: _Row, prompt_key: str | None, default_prompt: str) -> None:
        videos = self._videos(row)
        if not videos:
            return
        row.prompt = default_prompt
        if prompt_key:
            value = row.sample.get(prompt_key)
            if not isinstance(value, str) or not value.strip():
                row.failures[-1] = VideoOutcome(
                    "", error_kind=ERROR_INVALID_PROMPT,
                    error_message=f"prompt_key {prompt_key!r} must hold a non-empty string, "
                                  f"got {value!r}")
                return
            row.prompt = value
        try:
            row.chunks = plan_chunks(row.sample.get(self.text_key) or "", len(videos),
                                     self.video_token, self.eoc_token, self.special_tokens)
        except TextLayoutError as error:
            row.failures[-1] = VideoOutcome("", error_kind=error.kind, error_message=str(error))

    def video_slots(self) -> list[VideoSlot]:
        """Every video of every sample that is still to be captioned."""
        return [
            VideoSlot(r, v, path, row.prompt)
            for r, row in enumerate(self.rows) if not row.failed
            for v, path in enumerate(self._videos(row))
        ]

    def fail_video(self, slot: VideoSlot, kind: str, message: str) -> None:
        self.rows[slot.row].failures[slot.video] = VideoOutcome(
            slot.path, error_kind=kind, error_message=message)

    def set_candidates(self, slot: VideoSlot, candidates: list[Candidate],
                       timestamps: list[float], from_store: bool = False) -> None:
        """The video's candidates (``from_store``: reused from a result store)."""
        kept = [_without_loop(c) for c in candidates]
        self.rows[slot.row].candidates[slot.video] = (kept, tuple(timestamps), from_store)

    def build(self, *, run: RunInfo, mode: str, keep_original: bool,
              on_error: str, rng: random.Random, caption_key: str | None = None) -> dict:
        """The output batch as a dict of lists (the input's keys plus the meta field).

        Per input row, in input order: a row without videos passes through unchanged; a
        failed row is kept with an error record, dropped or raised, per ``on_error``; a
        captioned row yields its original (when ``keep_original``) then its generated rows.

        With ``caption_key`` (caption-field output) each row stays one row: its captions are
        written into that field instead (see :meth:`_field_row`), ``keep_original`` does not
        apply, and rows without videos or failed rows get empty captions in the field.
        """
        out: list[dict] = []
        self.records = []
        for row in self.rows:
            if not self._videos(row):
                out.append(self._with_field(row.sample, caption_key, []))
                self.records.append(None)
                continue
            picks = None if row.failed else self._pick(row, mode, rng)
            if picks is None:
                out.extend(self._with_field(r, caption_key, self._no_captions(row, mode))
                           for r in self._failure_rows(row, run, on_error))
            elif caption_key:
                out.append(self._field_row(row, picks, run, mode, caption_key))
            else:
                out.extend(([row.sample] if keep_original else [])
                           + self._text_rows(row, picks, run, mode))
            if picks is not None:
                self.records.append(out[-1][self.meta_key][META_KEY])
        return self._to_columns(out, caption_key)

    def _pick(self, row: _Row, mode: str, rng: random.Random) -> list[list[int]] | None:
        """``picks[s][v]``: the candidate of video ``v`` kept for new sample ``s``; None (and
        failures recorded) when a video has no usable caption."""
        videos = self._videos(row)
        texts = self._texts(row)
        empty = [v for v, cands in enumerate(texts) if not any(cands)
                 or (mode == "all" and not all(cands))]
        if empty:
            for v in empty:
                row.failures[v] = VideoOutcome(
                    videos[v], error_kind=ERROR_EMPTY_CAPTION,
                    error_message="the model generated an empty caption")
            return None
        # Empty candidates never win a single-caption mode while a non-empty one exists.
        usable = [[i for i, t in enumerate(cands) if t] for cands in texts]
        references = chunk_reference_texts(row.chunks, len(videos), self.special_tokens)
        picks = select_per_sample(mode, [[texts[v][i] for i in usable[v]] for v in
                                         range(len(videos))], references, rng)
        return [[usable[v][i] for v, i in enumerate(per_video)] for per_video in picks]

    def _texts(self, row: _Row) -> list[list[str]]:
        return [[c.text for c in row.candidates[v][0]] for v in range(len(self._videos(row)))]

    def _text_rows(self, row: _Row, picks: list[list[int]], run: RunInfo,
                   mode: str) -> list[dict]:
        """One new sample per pick: the original's text layout with the kept captions."""
        videos, texts = self._videos(row), self._texts(row)
        rows = []
        for s, chosen in enumerate(picks):
            captions = [texts[v][chosen[v]] for v in range(len(videos))]
            outcomes = [self._outcome(row, v, videos[v], chosen[v]) for v in range(len(videos))]
            record = build_record(STATUS_CAPTIONED, run, row.prompt, outcomes,
                                  s if mode == "all" else -1)
            new = dict(row.sample)
            new[self.text_key] = render_text(row.chunks, captions, self.video_token,
                                             self.eoc_token)
            new[self.meta_key] = with_record(row.sample.get(self.meta_key), record)
            rows.append(new)
        return rows

    def _field_row(self, row: _Row, picks: list[list[int]], run: RunInfo, mode: str,
                   caption_key: str) -> dict:
        """The sample itself with ``caption_key`` holding one caption per video (mode 'all':
        the list of every candidate per video). The record lists the kept candidates video
        by video (mode 'all': candidate ``i`` of video ``v`` at ``v * len(picks) + i``)."""
        videos, texts = self._videos(row), self._texts(row)
        kept = [[texts[v][chosen[v]] for chosen in picks] for v in range(len(videos))]
        outcomes = [self._outcome(row, v, videos[v], chosen[v])
                    for v in range(len(videos)) for chosen in picks]
        record = build_record(STATUS_CAPTIONED, run, row.prompt, outcomes, -1)
        new = dict(row.sample)
        new[caption_key] = kept if mode == "all" else [k[0] for k in kept]
        new[self.meta_key] = with_record(row.sample.get(self.meta_key), record)
        return new

    def _no_captions(self, row: _Row, mode: str) -> list:
        """The caption field of a failed sample: no candidates ('all') or "" per video; the
        reason is in its error record."""
        return [[] if mode == "all" else "" for _ in self._videos(row)]

    @staticmethod
    def _with_field(sample: dict, caption_key: str | None, value: list) -> dict:
        return {**sample, caption_key: value} if caption_key else sample

    @staticmethod
    def _outcome(row: _Row, video: int, path: str, index: int) -> VideoOutcome:
        candidates, timestamps, from_store = row.candidates[video]
        kept = candidates[index]
        return VideoOutcome(path, timestamps, kept.num_tokens, kept.hit_token_limit,
                            repetition_trimmed=kept.repetition_trimmed, from_store=from_store)

    def _failure_rows(self, row: _Row, run: RunInfo, on_error: str) -> list[dict]:
        failures = [row.failures[k] for k in sorted(row.failures)]
        if on_error == "raise":
            details = "; ".join(f"{f.path or 'sample'}: {f.error_kind}: {f.error_message}"
                                for f in failures)
            raise CaptioningError(f"captioning failed for a sample: {details}")
        record = build_record(STATUS_ERROR, run, row.prompt, failures, -1)
        self.records.append(record)
        if on_error == "drop":
            return []
        kept = dict(row.sample)
        kept[self.meta_key] = with_record(row.sample.get(self.meta_key), record)
        return [kept]

    def _to_columns(self, rows: list[dict], caption_key: str | None = None) -> dict:
        """Columns of ``rows``. Every row's meta holds the op's key, None where the op wrote no
        record (originals, rows without videos): datasets types a batch that mixes rows with
        and without the record as Json, and batches without such rows as a struct, so the
        shards of one job could not be joined."""
        extra = [k for k in (self.meta_key, caption_key) if k and k not in self.keys]
        keys = self.keys + extra
        columns = {k: [r.get(k) for r in rows] for k in keys}
        columns[self.meta_key] = [
            meta if meta and META_KEY in meta else {**(meta or {}), META_KEY: None}
            for meta in columns[self.meta_key]
        ]
        return columns


def _without_loop(candidate: Candidate) -> Candidate:
    """The candidate with a trailing repetition loop cut (and flagged), else unchanged."""
    trimmed = trim_repetition(candidate.text)
    if not trimmed.trimmed:
        return candidate
    return replace(candidate, text=trimmed.text, repetition_trimmed=True)
