"""Which videos a report shows, chosen in one pass over any number of them (pure).

A report of a million videos cannot show each one: its size would be that of the thumbnails of
a million videos. It shows at most ``limit`` videos: failed videos first, then flagged ones (the
quality gate's flags), together at most ``problem_limit``, then a random share of the rest to
fill ``limit``. Each kind is kept by reservoir sampling (Vitter's algorithm R), so a pass holds
at most ``limit`` entries of each kind in memory whatever the run's size, and the choice is
uniform within a kind and fixed by ``seed``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from dj_ops.report.entries import VideoEntry

DEFAULT_LIMIT = 400  # videos shown in a report's gallery
DEFAULT_PROBLEM_LIMIT = 200  # of which failed or flagged, at most

KINDS = ("failed", "flagged", "other")


def kind_of(entry: VideoEntry) -> str:
    """``failed``, ``flagged`` or ``other``."""
    return "failed" if entry.failed else "flagged" if entry.flagged else "other"


@dataclass
class Reservoir:
    """A uniform sample of at most ``size`` of the items offered (algorithm R)."""

    size: int
    rng: random.Random
    items: list = field(default_factory=list)
    seen: int = 0

    def offer(self, item) -> None:
        self.seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
            return
        slot = self.rng.randrange(self.seen)
        if slot < self.size:
            self.items[slot] = item


@dataclass(frozen=True)
class Shown:
    """The videos shown, in run order, and how many of each kind there were and are shown."""

    entries: list[VideoEntry]
    total: dict[str, int]
    shown: dict[str, int]


class GallerySample:
    """Offer every entry of a run; :meth:`result` is what the gallery shows.

    :param limit: most videos shown.
    :param problem_limit: most failed and flagged videos shown (failed first).
    :param seed: fixes the random choice.
    """

    def __init__(self, limit: int = DEFAULT_LIMIT, problem_limit: int = DEFAULT_PROBLEM_LIMIT,
                 seed: int = 0):
        if limit < 0 or problem_limit < 0:
            raise ValueError("the gallery's limits must be >= 0")
        self.limit, self.problem_limit = limit, min(problem_limit, limit)
        rng = random.Random(seed)
        self.kinds = {kind: Reservoir(limit, rng) for kind in KINDS}

    def offer(self, entry: VideoEntry) -> None:
        self.kinds[kind_of(entry)].offer(entry)

    def offer_all(self, entries: Iterable[VideoEntry]) -> GallerySample:
        for entry in entries:
            self.offer(entry)
        return self

    def result(self) -> Shown:
        """Failed and flagged, up to ``problem_limit`` together (each at least half of it when
        there are enough); the rest of ``limit`` from the others (and from failed or flagged
        beyond their limit, when there are not enough others)."""
        failed, flagged, other = (self.kinds[k].items for k in KINDS)
        # the problems' room shared: failed get half, and what flagged ones leave
        half = self.problem_limit // 2
        failed_room = max(half, self.problem_limit - len(flagged))
        taken = failed[:failed_room]
        taken += flagged[: self.problem_limit - len(taken)]
        room = self.limit - len(taken)
        taken += other[:room]
        if len(taken) < self.limit:  # few others: show more of the problems
            ids = {id(e) for e in taken}
            spare = [e for e in failed + flagged if id(e) not in ids]
            taken += spare[: self.limit - len(taken)]
        shown = {k: sum(kind_of(e) == k for e in taken) for k in KINDS}
        total = {k: self.kinds[k].seen for k in KINDS}
        return Shown(sorted(taken, key=lambda e: e.index), total, shown)
