"""What the enhancement op writes under ``Fields.meta`` (beside the captioning op's record), and
how a generated rewrite is finished (pure).

A rewrite is finished once, whether generated now or read back from the result store (a
repetition loop at its end was cut by the quality gate, as for the captioning op's captions): in
json mode rendered from its document, then fitted to the length bound. The record of a row says
which model, backend, preset and instruction, generation settings and bound made its rewrites,
and per rewrite where
its caption was (video, candidate, window), its tokens, whether it was cut to the bound and how,
whether it came from the store, the quality gate's flags, and any error. Every record has the
same fields with the same types (Arrow infers one schema whatever batch comes first).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from dj_ops.captioning.records import quality_fields
from dj_ops.captioning.requests import CaptionResult
from dj_ops.enhancement.length import Fitted, TargetTokens, fit_to_tokens
from dj_ops.enhancement.sources import Slot

ENHANCEMENT_KEY = "caption_enhancement"
STATUS_ENHANCED = "enhanced"
STATUS_ERROR = "error"
EMPTY_REWRITE = "empty_rewrite"  # the model wrote nothing (or only a loop)
INVALID_JSON = "invalid_json"  # json mode: the document is not valid under the schema


@dataclass(frozen=True)
class EnhanceRun:
    """What made every rewrite of one op instance."""

    model: str
    backend: str
    preset: str
    custom_prompt: bool
    prompt: str  # the instruction sent as the system message
    generation: dict  # captioning.generation.generation_record, as the backend resolved it
    target_tokenizer: str = ""
    max_target_tokens: int = -1


@dataclass(frozen=True)
class Rewrite:
    """One finished rewrite, or why there is none."""

    text: str = ""
    generated_tokens: int = 0
    hit_token_limit: bool = False
    repetition_trimmed: bool = False
    target_tokens: int = -1  # in the target tokenizer (-1: no bound)
    cut: str = ""  # how it was cut to the bound ("" not cut; sentence, word, token)
    from_store: bool = False
    decoding: str = ""
    attempts: tuple[tuple[str, ...], ...] = ()
    error_kind: str = ""
    error_message: str = ""
    structured: dict | None = None  # json mode: caption_json, captions_by_length

    def entry(self, slot: Slot) -> dict:
        """The record's entry of this rewrite at ``slot``."""
        return {**(self.structured or {}), "video": slot.video, "candidate": slot.candidate,
                "window": slot.window, "generated_tokens": int(self.generated_tokens),
                "hit_token_limit": bool(self.hit_token_limit),
                "repetition_trimmed": bool(self.repetition_trimmed),
                "target_tokens": int(self.target_tokens), "cut": self.cut,
                "from_store": bool(self.from_store), "decoding": self.decoding,
                "error_kind": self.error_kind, "error_message": self.error_message,
                **quality_fields(self.attempts)}


@dataclass(frozen=True)
class Finishing:
    """How generated text becomes a rewrite: the json renderer (``StructuredConfig``, json
    mode; None: text) and the bound (``target`` counts it; None: no bound)."""

    structured: object | None = None
    target: TargetTokens | None = None
    max_target_tokens: int | None = None

    def blank_structured(self) -> dict | None:
        return self.structured.blank_fields() if self.structured is not None else None


def finish(result: CaptionResult, finishing: Finishing, from_store: bool = False) -> Rewrite:
    """The rewrite of one generated (or stored) result."""
    blank = finishing.blank_structured()
    if not result.ok:
        return Rewrite(error_kind=result.error_kind, error_message=result.error_message,
                       from_store=from_store, structured=blank)
    candidate = result.candidates[0]
    common = {"generated_tokens": candidate.num_tokens,
              "hit_token_limit": candidate.hit_token_limit, "from_store": from_store,
              "decoding": candidate.decoding, "attempts": candidate.attempts}
    # a repetition loop was cut by the quality gate (the one repetition decision, with the
    # user's thresholds: dj_ops.ops.quality_gate)
    text, structured, trimmed = candidate.text, blank, candidate.repetition_trimmed
    if finishing.structured is not None:
        try:
            rendered = finishing.structured.render(text)
        except ValueError as error:
            return Rewrite(**common, error_kind=INVALID_JSON, error_message=str(error),
                           structured=blank)
        text, structured = rendered.text, rendered.fields
    fitted = (Fitted(text, -1) if finishing.target is None
              else fit_to_tokens(text, finishing.target, finishing.max_target_tokens))
    if not fitted.text.strip():
        return Rewrite(**common, repetition_trimmed=trimmed, error_kind=EMPTY_REWRITE,
                       error_message="the rewrite is empty" + (
                           " once cut to the bound" if fitted.cut else ""), structured=blank)
    return Rewrite(**common, text=fitted.text, repetition_trimmed=trimmed,
                   target_tokens=fitted.tokens, cut=fitted.cut, structured=structured)


def failure(kind: str, message: str, finishing: Finishing) -> Rewrite:
    """A rewrite that could not be made (its caption not found, its request refused)."""
    return Rewrite(error_kind=kind, error_message=message,
                   structured=finishing.blank_structured())


def build_record(run: EnhanceRun, entries: list[dict]) -> dict:
    """The op's record of one row: ``error`` when any rewrite failed, else ``enhanced``."""
    status = STATUS_ERROR if any(e["error_kind"] for e in entries) else STATUS_ENHANCED
    return {"status": status, "model": run.model, "backend": run.backend,
            "preset": run.preset, "custom_prompt": run.custom_prompt, "prompt": run.prompt,
            "generation": run.generation, "target_tokenizer": run.target_tokenizer,
            "max_target_tokens": int(run.max_target_tokens), "rewrites": entries}


def with_record(meta: dict | None, record: dict | None) -> dict:
    """A copy of a row's meta with this op's record (None: the key, for one Arrow schema)."""
    return {**(meta or {}), ENHANCEMENT_KEY: record}


@dataclass
class EnhanceSummary:
    """Counts over the op's records: rows by status (``no_record`` for rows passed through),
    rewrites, those reused from the store, those cut to the bound, errors by kind."""

    rows: Counter = field(default_factory=Counter)
    rewrites: int = 0
    from_store: int = 0
    cut: int = 0
    errors: Counter = field(default_factory=Counter)

    def add(self, records: Iterable[dict | None]) -> EnhanceSummary:
        for record in records:
            self.rows[record["status"] if record else "no_record"] += 1
            for entry in (record or {}).get("rewrites") or []:
                if entry["error_kind"]:
                    self.errors[entry["error_kind"]] += 1
                    continue
                self.rewrites += 1
                self.from_store += bool(entry["from_store"])
                self.cut += bool(entry["cut"])
        return self

    def format(self) -> str:
        rows = ", ".join(f"{k} {v}" for k, v in sorted(self.rows.items()))
        errors = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "none"
        return (f"{sum(self.rows.values())} rows: {rows}; rewrites {self.rewrites} "
                f"({self.from_store} reused from the result store, {self.cut} cut to the "
                f"length bound); failed rewrites: {errors}")
