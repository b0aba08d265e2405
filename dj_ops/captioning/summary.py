"""Pure counting of the op's records: how many rows were captioned, how many failed and why.

The op keeps one :class:`OutcomeSummary` per process (logged per batch and in aggregate, see
:mod:`dj_ops.ops.outcome_log`); :func:`summarize_records` counts the same things from output
rows, for tests and tools that check a finished dataset.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from data_juicer.utils.constant import Fields

from dj_ops.captioning.records import META_KEY, STATUS_ERROR

NO_RECORD = "no_record"  # a row the op wrote no record on (no videos, or a kept original)


@dataclass
class OutcomeSummary:
    """Counts over rows and their records.

    :param rows: rows counted.
    :param by_status: rows per record status (``captioned``, ``error``) or ``no_record``.
    :param error_kinds: failed videos per error kind (a failure of the whole sample, such as
        ``invalid_prompt``, counts once).
    :param videos_captioned: videos of captioned rows.
    :param hit_token_limit: captioned videos whose caption stopped at the token limit.
    :param repetition_trimmed: captioned videos whose caption had a repetition loop cut.
    :param videos_from_store: captioned videos whose captions were reused from the result store
        (the others were generated in this run).
    """

    rows: int = 0
    by_status: Counter = field(default_factory=Counter)
    error_kinds: Counter = field(default_factory=Counter)
    videos_captioned: int = 0
    hit_token_limit: int = 0
    repetition_trimmed: int = 0
    videos_from_store: int = 0

    def add(self, record: dict | None) -> None:
        """Count one row, given the op's record on it (None when it has none)."""
        self.rows += 1
        if not record:
            self.by_status[NO_RECORD] += 1
            return
        self.by_status[record["status"]] += 1
        videos = record.get("videos") or []
        if record["status"] == STATUS_ERROR:
            self.error_kinds.update(v["error_kind"] for v in videos)
            return
        self.videos_captioned += len(videos)
        self.hit_token_limit += sum(bool(v.get("hit_token_limit")) for v in videos)
        self.repetition_trimmed += sum(bool(v.get("repetition_trimmed")) for v in videos)
        self.videos_from_store += sum(bool(v.get("from_store")) for v in videos)

    def merge(self, other: OutcomeSummary) -> None:
        """Add ``other``'s counts to these."""
        self.rows += other.rows
        self.by_status.update(other.by_status)
        self.error_kinds.update(other.error_kinds)
        self.videos_captioned += other.videos_captioned
        self.hit_token_limit += other.hit_token_limit
        self.repetition_trimmed += other.repetition_trimmed
        self.videos_from_store += other.videos_from_store

    def as_dict(self) -> dict:
        """Plain, JSON-ready counts (keys sorted)."""
        return {
            "rows": self.rows,
            "by_status": dict(sorted(self.by_status.items())),
            "error_kinds": dict(sorted(self.error_kinds.items())),
            "videos_captioned": self.videos_captioned,
            "hit_token_limit": self.hit_token_limit,
            "repetition_trimmed": self.repetition_trimmed,
            "videos_from_store": self.videos_from_store,
        }

    def format(self) -> str:
        """One log line.

        >>> s = OutcomeSummary(); s.add({"status": "error", "videos": [
        ...     {"error_kind": "missing_file"}]}); s.add(None); s.format()
        '2 rows: error 1, no_record 1; errors: missing_file 1; 0 videos captioned \
(0 reused from the result store, 0 generated), 0 at the token limit, 0 repetition loops trimmed'
        """
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(self.by_status.items())) or "none"
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.error_kinds.items())) or "none"
        return (
            f"{self.rows} rows: {statuses}; errors: {kinds}; "
            f"{self.videos_captioned} videos captioned ({self.videos_from_store} reused from the "
            f"result store, {self.videos_captioned - self.videos_from_store} generated), "
            f"{self.hit_token_limit} at the token limit, {self.repetition_trimmed} repetition "
            "loops trimmed"
        )


def record_of(row: dict, meta_field: str = Fields.meta) -> dict | None:
    """The op's record on an output row, or None."""
    return (row.get(meta_field) or {}).get(META_KEY) or None


def summarize(rows: Iterable[dict], meta_field: str = Fields.meta) -> OutcomeSummary:
    """The counts over output rows (dicts)."""
    summary = OutcomeSummary()
    for row in rows:
        summary.add(record_of(row, meta_field))
    return summary


def summarize_records(rows: Iterable[dict], meta_field: str = Fields.meta) -> dict:
    """Counts by status and error kind over output rows (list of dicts), as a plain dict.

    In ``all`` mode a captioned sample appears once per candidate, and kept originals (no
    record) are counted under ``no_record``.
    """
    return summarize(rows, meta_field).as_dict()
