"""The run's numbers, counted over every video in one pass (pure): what the summary and the
charts show. Only numbers are kept per video (a few floats), never captions or thumbnails, so a
run of millions of videos is counted in bounded memory per video."""

from __future__ import annotations

from array import array
from collections import Counter
from dataclasses import dataclass, field

from dj_ops.report.entries import VideoEntry


@dataclass
class RunStats:
    """Counts and per-video numbers over a run's entries (:meth:`add` each)."""

    videos: int = 0
    captioned: int = 0
    failed: int = 0
    reused: int = 0  # captions reused from the result store
    flagged: int = 0
    hit_token_limit: int = 0
    error_kinds: Counter = field(default_factory=Counter)
    flags: Counter = field(default_factory=Counter)
    models: Counter = field(default_factory=Counter)
    backends: Counter = field(default_factory=Counter)
    prompts: Counter = field(default_factory=Counter)
    runs: dict = field(default_factory=dict)  # the first record's generation and mode
    finished: array = field(default_factory=lambda: array("d"))  # Unix seconds
    decode_s: array = field(default_factory=lambda: array("d"))
    generate_s: array = field(default_factory=lambda: array("d"))
    caption_words: array = field(default_factory=lambda: array("l"))
    frame_counts: array = field(default_factory=lambda: array("l"))
    visual_tokens: array = field(default_factory=lambda: array("l"))
    window_counts: array = field(default_factory=lambda: array("l"))
    thumbnails: int = 0

    def add(self, entry: VideoEntry) -> None:
        self.videos += 1
        self.models[entry.model] += 1
        self.backends[entry.backend] += 1
        if len(self.prompts) < 20 or entry.prompt in self.prompts:
            self.prompts[entry.prompt] += 1
        self.runs = self.runs or dict(entry.run)
        timing = entry.timing
        if timing.get("finished", 0) > 0:
            self.finished.append(timing["finished"])
        if timing.get("decode_s", -1) >= 0:
            self.decode_s.append(timing["decode_s"])
        if timing.get("generate_s", -1) >= 0:
            self.generate_s.append(timing["generate_s"])
        if entry.frames.get("count", 0) > 0:
            self.frame_counts.append(int(entry.frames["count"]))
        if entry.frames.get("visual_tokens", -1) >= 0:
            self.visual_tokens.append(int(entry.frames["visual_tokens"]))
        if entry.windows:
            self.window_counts.append(len(entry.windows))
        self.thumbnails += entry.thumbnail is not None
        if entry.failed:
            self.failed += 1
            self.error_kinds[entry.error_kind or "unknown"] += 1
            return
        self.captioned += 1
        self.reused += entry.from_store
        self.flagged += entry.flagged
        self.hit_token_limit += entry.hit_token_limit
        self.flags.update(entry.flags)
        for caption in entry.captions:
            self.caption_words.append(len(caption.split()))

    @property
    def span_s(self) -> float:
        """Seconds from the first video's result to the last's (0 with fewer than two)."""
        return max(self.finished) - min(self.finished) if len(self.finished) > 1 else 0.0

    def summary(self) -> dict:
        """The counts, JSON-ready (the report's summary and its embedded data)."""
        return {
            "videos": self.videos, "captioned": self.captioned, "failed": self.failed,
            "reused": self.reused, "generated": self.captioned - self.reused,
            "flagged": self.flagged, "hit_token_limit": self.hit_token_limit,
            "error_kinds": dict(self.error_kinds.most_common()),
            "flags": dict(self.flags.most_common()),
            "models": dict(self.models.most_common()),
            "backends": dict(self.backends.most_common()),
            "decode_s": round(sum(self.decode_s), 3),
            "generate_s": round(sum(self.generate_s), 3),
            "span_s": round(self.span_s, 3),
            "thumbnails": self.thumbnails,
        }
