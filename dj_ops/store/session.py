"""The store as one op process uses it: stored captions reused before decoding, new captions
written after each micro-batch (one transaction each), and counts of both."""

from __future__ import annotations

from dataclasses import dataclass, field

from dj_ops.backends.base import Candidate
from dj_ops.captioning.records import WindowOutcome
from dj_ops.store.base import ResultStore
from dj_ops.store.keys import ResultKeyer


def encode_result(candidates: list[Candidate], timestamps, frames: dict | None = None,
                  windows=None, origin: dict | None = None) -> dict:
    """A result as stored: the candidates as the quality gate kept them (a repetition loop cut,
    with the decoding path that made them and the gate's flags of each attempt), the frames'
    timestamps, what the video was decoded at (its ``frames`` record: a reused result is not
    decoded again), with windows on the video's windows (``WindowOutcome`` each), and the
    ``worker`` that generated it (machine, Ray node, process; kept for inspection, not read
    back)."""
    value = {"candidates": [[c.text, int(c.num_tokens), bool(c.hit_token_limit),
                             bool(c.repetition_trimmed), c.decoding,
                             [list(flags) for flags in c.attempts]] for c in candidates],
             "timestamps": [float(t) for t in timestamps],
             "frames": dict(frames or {}),
             "worker": dict(origin or {})}
    if windows is not None:
        value["windows"] = [window.stored() for window in windows]
    return value


def decode_result(value: dict) -> tuple[list[Candidate], list[float], dict, tuple | None]:
    """The candidates, timestamps, ``frames`` record (stores written before the frame budget:
    none) and windows (None: stored without windows) of a stored result."""
    candidates = [Candidate(*c[:5], attempts=tuple(tuple(f) for f in c[5]) if c[5:] else ())
                  for c in value["candidates"]]  # stores written before the gate: no attempts
    windows = value.get("windows")
    return (candidates, list(value["timestamps"]), dict(value.get("frames") or {}),
            None if windows is None else tuple(WindowOutcome.from_stored(w) for w in windows))


@dataclass
class StoreSession:
    """A :class:`ResultStore` with the keys of one op configuration.

    ``reused`` and ``generated`` count videos (slots) since the session opened; ``origin``
    (this process's ``worker`` identity) is stored with each new result.
    """

    store: ResultStore
    keyer: ResultKeyer
    reused: int = 0
    generated: int = 0
    origin: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._pending: dict[str, dict] = {}

    def reuse(self, builder, slots_by_path: dict[str, list]) -> dict[str, list]:
        """Give ``builder`` the stored captions of every slot in the store; return the slots
        left to caption, by path (a path whose slots were all stored is not decoded)."""
        keys = {slot: self.keyer.key(slot.path, slot.prompt)
                for slots in slots_by_path.values() for slot in slots}
        stored = self.store.get_many(k for k in keys.values() if k)
        remaining: dict[str, list] = {}
        for path, slots in slots_by_path.items():
            for slot in slots:
                value = stored.get(keys[slot]) if keys[slot] else None
                if value is None:
                    remaining.setdefault(path, []).append(slot)
                    continue
                candidates, timestamps, frames, windows = decode_result(value)
                builder.set_candidates(slot, candidates, timestamps, from_store=True)
                builder.set_frames(slot, frames)
                if windows is not None:
                    builder.set_windows(slot, windows)
                self.reused += 1
        return remaining

    def add(self, slot, candidates: list[Candidate], timestamps,
            frames: dict | None = None, windows=None) -> None:
        """Keep a newly generated result (``frames``: its record of what the video was decoded
        at; ``windows``: its windows, with windows on), to be written by :meth:`flush`."""
        key = self.keyer.key(slot.path, slot.prompt)
        self.generated += 1
        if key:
            self._pending[key] = encode_result(candidates, timestamps, frames, windows,
                                               self.origin)

    def flush(self) -> None:
        """Write the kept results (one transaction in SQLite; each result whole on shared
        storage)."""
        self.store.put_many(self._pending)
        self._pending = {}

    def close(self) -> None:
        self.flush()
        self.store.close()
