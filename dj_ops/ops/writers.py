"""How captions go back into the batch: one writer per output mode, chosen from a table.

A writer turns one input row into its output rows: for a captioned row (its kept candidates
given as ``picks``), for a failed row that is kept (its error record), and for a row without
videos. What a failed row becomes (kept, dropped, raised) is decided once by the builder
(``on_error``); which candidates are kept, by :mod:`dj_ops.captioning.selection`. Adding an
output mode is one writer class and one row of :data:`WRITERS`.
"""

from __future__ import annotations

from dataclasses import dataclass

from dj_ops.captioning.records import (
    STATUS_CAPTIONED,
    RunInfo,
    VideoOutcome,
    build_record,
    with_record,
)
from dj_ops.captioning.selection import candidate_index, keeps_every_candidate
from dj_ops.captioning.text import Chunk, render_text
from dj_ops.ops.config import OutputPolicy, TextLayout
from dj_ops.ops.structured_config import StructuredConfig, lengths_field


@dataclass(frozen=True)
class CaptionedRow:
    """One input row whose every video has usable candidates.

    :param texts: ``texts[v][i]``: candidate ``i`` of video ``v``.
    :param outcomes: ``outcomes[v][i]``: its provenance.
    :param picks: ``picks[s][v]``: the candidate of video ``v`` kept for new sample ``s``.
    """

    sample: dict
    chunks: list[Chunk]
    prompt: str
    texts: list[list[str]]
    outcomes: list[list[VideoOutcome]]
    picks: list[list[int]]


class OutputWriter:
    """The rows one input row becomes, in one output mode."""

    def __init__(self, layout: TextLayout, policy: OutputPolicy,
                 structured: StructuredConfig | None = None):
        self.layout, self.policy, self.structured = layout, policy, structured

    @property
    def fields(self) -> tuple[str, ...]:
        """The fields this writer adds to every row (besides the meta field)."""
        return ()

    def with_record(self, sample: dict, record: dict) -> dict:
        """A copy of ``sample`` with the op's record in its meta field."""
        meta = self.layout.meta_key
        return {**sample, meta: with_record(sample.get(meta), record)}

    def captioned(self, row: CaptionedRow, run: RunInfo) -> list[dict]:
        raise NotImplementedError

    def failed(self, sample: dict, record: dict) -> dict:
        """A failed row that is kept: the sample with its error record."""
        return self.with_record(sample, record)

    def without_videos(self, sample: dict) -> dict:
        return sample


class TextRowsWriter(OutputWriter):
    """Generated samples: per pick, the original's text layout with the kept captions (after
    the original itself when ``keep_original``)."""

    def captioned(self, row: CaptionedRow, run: RunInfo) -> list[dict]:
        layout, rows = self.layout, [row.sample] if self.policy.keep_original else []
        for chosen in row.picks:
            captions = [texts[chosen[v]] for v, texts in enumerate(row.texts)]
            outcomes = [per_video[chosen[v]] for v, per_video in enumerate(row.outcomes)]
            # a mode keeping every candidate gives every video of a sample the same index
            record = build_record(STATUS_CAPTIONED, run, row.prompt, outcomes,
                                  candidate_index(self.policy.mode, chosen[0]))
            new = self.with_record(row.sample, record)
            new[layout.text_key] = render_text(row.chunks, captions, layout.video_token,
                                               layout.eoc_token)
            rows.append(new)
        return rows


class CaptionFieldWriter(OutputWriter):
    """The sample itself, its ``caption_key`` holding one caption per video (for a mode that
    keeps every candidate: the list of them per video). The record lists the kept candidates
    video by video (every candidate: candidate ``i`` of video ``v`` at ``v * len(picks) + i``).
    A failed sample gets empty captions ("" or [] per video), a sample without videos [].
    Structured captions (caption_format json) add ``<caption_key>_lengths``: per video its
    renderings ``{name: text}`` (for a mode that keeps every candidate, a list of them), blank
    ones for a failed sample."""

    @property
    def fields(self) -> tuple[str, ...]:
        key = self.policy.caption_key
        return (key, lengths_field(key)) if self.structured else (key,)

    def _per_video(self, kept: list[list]) -> list:
        """One value per video: the list of kept ones for a mode that keeps every candidate,
        else the first."""
        return kept if keeps_every_candidate(self.policy.mode) else [k[0] for k in kept]

    def captioned(self, row: CaptionedRow, run: RunInfo) -> list[dict]:
        kept = [[texts[chosen[v]] for chosen in row.picks] for v, texts in enumerate(row.texts)]
        outcomes = [per_video[chosen[v]] for v, per_video in enumerate(row.outcomes)
                    for chosen in row.picks]
        record = build_record(STATUS_CAPTIONED, run, row.prompt, outcomes, -1)
        out = {**self.with_record(row.sample, record),
               self.policy.caption_key: self._per_video(kept)}
        if self.structured:
            lengths = [[per_video[chosen[v]].structured["captions_by_length"]
                        for chosen in row.picks] for v, per_video in enumerate(row.outcomes)]
            out[lengths_field(self.policy.caption_key)] = self._per_video(lengths)
        return [out]

    def failed(self, sample: dict, record: dict) -> dict:
        every = keeps_every_candidate(self.policy.mode)
        videos = sample.get(self.layout.video_key) or []
        out = {**self.with_record(sample, record),
               self.policy.caption_key: [[] if every else "" for _ in videos]}
        if self.structured:
            blank = self.structured.blank_fields()["captions_by_length"]
            out[lengths_field(self.policy.caption_key)] = [[] if every else blank
                                                           for _ in videos]
        return out

    def without_videos(self, sample: dict) -> dict:
        return {**sample, **{key: [] for key in self.fields}}


WRITERS: dict[str, type[OutputWriter]] = {
    "text_rows": TextRowsWriter,
    "caption_field": CaptionFieldWriter,
}


def output_mode(policy: OutputPolicy) -> str:
    """The writer's name in :data:`WRITERS` for ``policy``."""
    return "caption_field" if policy.caption_key else "text_rows"


def writer_for(layout: TextLayout, policy: OutputPolicy,
               structured: StructuredConfig | None = None) -> OutputWriter:
    return WRITERS[output_mode(policy)](layout, policy, structured)
