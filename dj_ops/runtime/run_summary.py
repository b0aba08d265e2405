"""The few lines that end every run, the same for ``dj-process`` and ``dj-ops-caption``: counts,
time, the result store, the error kinds and where the output is; or, for a run that was stopped,
what the result store kept. Pure text from counts (printing is the caller's)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from dj_ops.captioning.records import STATUS_CAPTIONED, STATUS_ERROR


@dataclass(frozen=True)
class RunTotals:
    """What a finished run did.

    :param captioned: output rows captioned (one per video for ``dj-ops-caption``).
    :param failed: output rows with an error record.
    :param videos: videos captioned; ``reused`` of them came from the result store.
    :param seconds: the run's wall time (the model's loading included).
    :param error_kinds: failed videos per error kind.
    """

    captioned: int
    failed: int
    videos: int
    reused: int
    seconds: float
    error_kinds: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, records: Iterable[dict | None], seconds: float) -> RunTotals:
        """The totals of output rows, given each row's record (None: no record). A video
        counts once however many candidates list it: in ``all`` mode a caption field's record
        lists each candidate, and each further candidate's row has ``candidate_index`` > 0.

        >>> v = {"path": "a.mp4", "from_store": True}
        >>> RunTotals.of([{"status": "captioned", "videos": [v, v]}, None], 2.0).reused
        1
        """
        captioned = failed = videos = reused = 0
        kinds: Counter = Counter()
        for record in records:
            if not record:
                continue
            if record["status"] == STATUS_ERROR:
                failed += 1
                kinds.update(v["error_kind"] for v in record.get("videos") or [])
                continue
            captioned += record["status"] == STATUS_CAPTIONED
            if record.get("candidate_index", -1) > 0:
                continue
            by_path = {v["path"]: bool(v.get("from_store")) for v in record.get("videos") or []}
            videos += len(by_path)
            reused += sum(by_path.values())
        return cls(captioned, failed, videos, reused, seconds, dict(sorted(kinds.items())))

    @property
    def videos_per_second(self) -> float:
        """Captioned videos per second (failed ones are not throughput)."""
        return round(self.videos / self.seconds, 3) if self.seconds else 0.0


def summary_lines(totals: RunTotals, output: str, store: str | None = None,
                  report: str | None = None) -> list[str]:
    """The end of a finished run.

    >>> print("\\n".join(summary_lines(RunTotals(3, 1, 3, 2, 10.0, {"decode_error": 1}),
    ...                                "/o.jsonl", "/s.sqlite")))
    captioned: 3  failed: 1  time: 10.0 s  videos/s: 0.3
    store: /s.sqlite (2 videos reused from it, 1 generated)
    errors: decode_error 1 (each failed row's __dj__meta__ says why)
    output: /o.jsonl
    """
    lines = [f"captioned: {totals.captioned}  failed: {totals.failed}  "
             f"time: {round(totals.seconds, 2)} s  videos/s: {totals.videos_per_second}"]
    if store is not None:
        lines.append(f"store: {store} ({totals.reused} videos reused from it, "
                     f"{totals.videos - totals.reused} generated)")
    if totals.error_kinds:
        kinds = ", ".join(f"{kind} {n}" for kind, n in totals.error_kinds.items())
        lines.append(f"errors: {kinds} (each failed row's __dj__meta__ says why)")
    lines.append(f"output: {output}")
    if report is not None:  # the run report (report_path)
        lines.append(f"report: {report} (open it in a browser)")
    return lines


def stop_lines(signal_name: str, seconds: float, store: str | None, stored: int,
               stored_before: int) -> list[str]:
    """The end of a run that was stopped (SIGTERM, Ctrl-C): what the result store kept.

    >>> stop_lines("SIGTERM", 12.34, "/s.sqlite", 14, 6)[0]
    'stopped by SIGTERM after 12.3 s: the result store /s.sqlite holds 14 results (8 written by \
this run)'
    """
    head = f"stopped by {signal_name} after {round(seconds, 1)} s"
    if store is None:
        return [f"{head}: no result store, so nothing was kept",
                "set result_store (dj-ops-caption keeps one by default) to make a stopped run "
                "resumable"]
    return [f"{head}: the result store {store} holds {stored} results "
            f"({stored - stored_before} written by this run)",
            "run the same command again to resume: stored videos are not captioned again"]


def failure_lines(error: BaseException, seconds: float, store: str | None, stored: int,
                  stored_before: int) -> list[str]:
    """The end of a run that failed: the error (its message names the fix where it is ours),
    and what the result store kept.

    >>> failure_lines(ValueError("bad"), 2.0, None, 0, 0)
    ['failed after 2.0 s: ValueError: bad']
    """
    lines = [f"failed after {round(seconds, 1)} s: {type(error).__name__}: {error}"]
    if store is not None:
        lines.append(f"the result store {store} holds {stored} results "
                     f"({stored - stored_before} written by this run): the same command, once "
                     "fixed, resumes from it")
    return lines


def count_stored(path: str | os.PathLike | None) -> int:
    """Results in the result store that ``path`` names (a path or a store URL; 0 when there is
    none yet). A shared store (``file://``, ``s3://``) is counted by listing it."""
    if path is None:
        return 0
    from dj_ops.store import open_store, parse_store_url

    scheme, location = parse_store_url(os.fspath(path))
    if scheme in ("", "sqlite") and not os.path.exists(location):
        return 0
    with open_store(os.fspath(path)) as store:
        return store.count()
