"""Pure builders of what the op writes under ``Fields.meta``: provenance and error records.

Every record has the same fields with the same types whatever happened (errors are empty
strings, not missing keys, timestamps a float64 array even when empty), so Arrow infers one
schema for all rows and batches, whichever batch comes first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

META_KEY = "vlm_video_captioning"

STATUS_CAPTIONED = "captioned"
STATUS_ERROR = "error"
# A video's ``frames`` record when nothing was decoded (same keys and types as a real one):
# frame count and size, its visual tokens and the budget (-1: not counted / no budget), and
# what the budget cut (``none``, ``frames``, ``pixels``; empty: no budget).
NO_FRAMES = {"count": 0, "height": 0, "width": 0, "visual_tokens": -1,
             "max_visual_tokens": -1, "reduced": ""}
# A record's ``worker`` when none was given (dj_ops.cluster.identity.worker_identity).
NO_WORKER = {"host": "", "node": "", "pid": -1}
# A video's ``timing`` (for the run report's charts): seconds its decoding took in the decoding
# worker, its share of generation's wall time (a micro-batch's call time divided among its
# videos; on a self-batching engine, the time from submission to result divided by the requests
# in flight at submission), and when its result came back (Unix seconds). -1 / 0: not measured
# (the op's record_timing off, the default without report_path; reused from the result store;
# not decoded; a long video's windows).
NO_TIMING = {"decode_s": -1.0, "generate_s": -1.0, "finished": 0.0}


@dataclass(frozen=True)
class VideoOutcome:
    """What happened to one video of a sample (for a generated sample: its kept candidate)."""

    path: str
    timestamps: tuple[float, ...] = ()
    generated_tokens: int = 0
    hit_token_limit: bool = False
    error_kind: str = ""
    error_message: str = ""
    repetition_trimmed: bool = False  # a trailing repetition loop was cut from the caption
    from_store: bool = False  # reused from the result store, not generated in this run
    decoding: str = ""  # which decoding path produced the caption (Candidate.decoding)
    batching: str = ""  # how its generate call was batched (Candidate.batching)
    # what the video was decoded at and its frame budget (dj_ops.video.budget.frames_record)
    frames: dict = field(default_factory=dict)
    # with windows on (window_seconds): per window its WindowOutcome (dj_ops.ops.windowed);
    # None: windows off, no "windows" field
    windows: tuple[WindowOutcome, ...] | None = None
    # the quality gate's flags of each attempt made for the kept caption (Candidate.attempts)
    attempts: tuple[tuple[str, ...], ...] = ()
    # caption_format json: caption_json and captions_by_length (ops/structured_config.py)
    structured: dict | None = None
    # the video's candidates left out (empty, or not a valid document), each with its index,
    # why and its token facts: "candidate 1: invalid_json: ... (1500 tokens, token limit hit)"
    dropped: tuple[str, ...] = ()
    timing: dict = field(default_factory=dict)  # NO_TIMING's keys
    # a strip of the frames it was captioned from (dj_ops.video.thumbnails.frame_strip); None:
    # none kept
    thumbnail: dict | None = None

    def as_dict(self) -> dict:
        return {**(self.structured or {}),
            "path": self.path,
            "timestamps": _timestamps(self.timestamps),
            "generated_tokens": int(self.generated_tokens),
            "hit_token_limit": bool(self.hit_token_limit),
            "error_kind": self.error_kind,
            "error_message": self.error_message,
            "repetition_trimmed": bool(self.repetition_trimmed),
            "from_store": bool(self.from_store),
            "decoding": self.decoding,
            "batching": self.batching,
            "frames": {**NO_FRAMES, **self.frames},
            **quality_fields(self.attempts),
            "dropped_candidates": np.asarray(self.dropped, dtype=str),
            "timing": {k: float(v) for k, v in {**NO_TIMING, **self.timing}.items()},
            "thumbnail": self.thumbnail or no_thumbnail(),
        } | ({} if self.windows is None else {"windows": [w.as_dict() for w in self.windows]})


@dataclass(frozen=True)
class WindowOutcome:
    """One window of a long video (``window_seconds``): its span, its caption (the first
    candidate) or error, what its frames were decoded at, its token facts and the quality
    gate's flags of each attempt made for it."""

    start: float
    end: float
    caption: str = ""
    error_kind: str = ""
    error_message: str = ""
    frames: dict = field(default_factory=dict)
    generated_tokens: int = 0
    hit_token_limit: bool = False
    repetition_trimmed: bool = False
    attempts: tuple[tuple[str, ...], ...] = ()

    def as_dict(self) -> dict:
        """Its entry in the video's ``windows`` (the same fields and types for every window)."""
        return {"start": float(self.start), "end": float(self.end), "caption": self.caption,
                "error_kind": self.error_kind, "error_message": self.error_message,
                "frames": {**NO_FRAMES, **self.frames},
                "generated_tokens": int(self.generated_tokens),
                "hit_token_limit": bool(self.hit_token_limit),
                "repetition_trimmed": bool(self.repetition_trimmed),
                **quality_fields(self.attempts)}

    def stored(self) -> dict:
        """JSON-ready (the result store keeps a video's windows with its caption)."""
        return {**asdict(self), "attempts": [list(flags) for flags in self.attempts]}

    @classmethod
    def from_stored(cls, value: dict) -> WindowOutcome:
        attempts = tuple(tuple(flags) for flags in value.get("attempts", ()))
        return cls(**{**value, "attempts": attempts})


def no_thumbnail() -> dict:
    """A video's ``thumbnail`` when none was kept: the keys and types of a strip
    (:func:`dj_ops.video.thumbnails.frame_strip`: base64 JPEG, the tiles' timestamps, one tile's
    size), empty."""
    return {"image": "", "timestamps": _timestamps(()), "width": 0, "height": 0}


def quality_fields(attempts: tuple[tuple[str, ...], ...]) -> dict:
    """The gate's provenance of one caption: ``attempts`` (generations made for it; 0 when no
    gate checked it), ``quality_flags`` (the kept text's flags, empty when it passes) and
    ``attempt_flags`` (each attempt's flags comma-joined, "" for a pass). Lists of strings as
    string arrays, so that Arrow types them alike when every one is empty (as timestamps)."""
    return {
        "attempts": len(attempts),
        "quality_flags": np.asarray(attempts[-1] if attempts else (), dtype=str),
        "attempt_flags": np.asarray([",".join(a) for a in attempts], dtype=str),
    }


def _timestamps(timestamps: tuple[float, ...]) -> np.ndarray:
    """Seconds rounded to the millisecond, as a float64 array (a list once in the dataset).

    Not a Python list: Arrow types an empty list (a failed video's) as a list of nulls, and a
    first batch made only of failures would fix that type for the whole dataset and reject
    later timestamps; and datasets stores a column mixing arrays and lists as JSON.
    """
    return np.round(np.asarray(timestamps, dtype=np.float64), 3)


@dataclass(frozen=True)
class RunInfo:
    """What produced the captions: the same for every sample of one op instance."""

    model: str
    backend: str
    generation: dict  # what generation ran with (captioning.generation.generation_record)
    keep_candidate_mode: str
    # the machine, Ray node and process that built the row (and captioned its videos that are
    # not from_store): dj_ops.cluster.identity.worker_identity
    worker: dict = field(default_factory=dict)


def build_record(
    status: str, run: RunInfo, prompt: str, videos: list[VideoOutcome], candidate_index: int
) -> dict:
    """The op's record for one row.

    :param status: ``captioned`` for a generated row, ``error`` for a row that records failures.
    :param candidate_index: which candidate a row of ``all`` mode holds; -1 otherwise.
    """
    return {
        "status": status,
        "model": run.model,
        "backend": run.backend,
        "prompt": prompt,
        "generation": run.generation,
        "keep_candidate_mode": run.keep_candidate_mode,
        "candidate_index": int(candidate_index),
        "videos": [v.as_dict() for v in videos],
        "worker": {**NO_WORKER, **run.worker},
    }


def with_record(meta: dict | None, record: dict) -> dict:
    """A copy of a row's meta dict with the op's record added (the input is not modified)."""
    updated = dict(meta or {})
    updated[META_KEY] = record
    return updated
