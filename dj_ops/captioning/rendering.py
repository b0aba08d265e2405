"""Deterministic text captions rendered from a structured (JSON) caption, at named lengths.

A recipe names its lengths, ``caption_lengths: {short: 40, long: 220}``; each is a budget that
the rendered text never exceeds, counted by a ``counter``:

- :func:`count_words` (the default): whitespace-separated words. No tokenizer to download, the
  same count for every trainer, and what people mean by "a 40-word caption";
- :func:`token_counter` of a named tokenizer: exact for the trainer that will read the caption.
  Text encoders cut at tokens, not words (CogVideoX's T5 prompt holds 226 tokens, CLIP's 77),
  and English prose takes about 1.3 T5 tokens a word, so a word budget for T5 needs a margin
  (170 words for 226 tokens) where a token budget is exact.

The text is made of sentences, one per field, in a fixed priority order: the summary, then each
subject, the scene, the camera, the lighting, the style, then the timeline's events. Sentences
are taken in that order while the whole text stays within the budget; one that does not fit is
skipped and later, shorter ones may still fit, so lower-priority fields are the first dropped.
The first sentence (the summary) is always there: when it does not fit, its words are cut to
the budget and nothing else follows (never an empty caption while the document says
something). The budget is checked on the joined text itself, so it holds for tokenizers whose
counts are not additive.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Counter = Callable[[str], int]

# Fields of the default schema in priority order; other schemas' fields follow, in their
# document order, as "Field: value." sentences.
PRIORITY = ("summary", "subjects", "scene", "camera", "lighting", "style", "timeline")


def count_words(text: str) -> int:
    """Whitespace-separated words."""
    return len(text.split())


def token_counter(tokenizer) -> Counter:
    """A counter in the tokens of ``tokenizer`` (a Hugging Face tokenizer), special tokens
    excluded: the budget is the text's share of the encoder's window."""
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def parse_caption_lengths(lengths: Mapping[str, int] | None) -> dict[str, int]:
    """Check a recipe's ``caption_lengths``: a non-empty mapping of names to positive integers.

    :raises ValueError: naming the bad entry and the expected form.
    """
    example = "caption_lengths: {short: 40, long: 220}"
    if not lengths or not isinstance(lengths, Mapping):
        raise ValueError(f"caption_lengths must be a non-empty mapping, for example {example}")
    for name, budget in lengths.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"caption_lengths names must be non-empty strings, got {name!r}")
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ValueError(f"caption_lengths[{name!r}] must be a positive integer, "
                             f"got {budget!r} (for example {example})")
    return dict(lengths)


def _sentence(text: str) -> str:
    """``text`` trimmed, first letter upper-cased, ending with a full stop."""
    text = " ".join(str(text).split()).rstrip(",;:")
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _seconds(value: Any) -> str:
    return f"{float(value):g}s" if isinstance(value, int | float) else str(value)


def _subject(subject: Mapping[str, Any]) -> str:
    parts = [subject.get("name"), subject.get("appearance"), subject.get("action")]
    return _sentence(", ".join(str(p).strip() for p in parts if p))


def _camera(camera: Mapping[str, Any]) -> str:
    shot, angle, motion = (camera.get(k) for k in ("shot_type", "angle", "motion"))
    words = [f"{shot} shot" if shot else "", f"at {angle}" if angle else "",
             f"with {motion} camera" if motion else ""]
    return _sentence(" ".join(w for w in words if w))


def _event(event: Mapping[str, Any]) -> str:
    if "start" in event and "end" in event:
        return _sentence(f"from {_seconds(event['start'])} to {_seconds(event['end'])}, "
                         f"{event.get('event', '')}")
    return _generic("event", event)


def _generic(key: str, value: Any) -> str:
    """A field of another schema: "Key: value." with lists and objects flattened."""
    if isinstance(value, Mapping):
        value = "; ".join(f"{k}: {_flat(v)}" for k, v in value.items())
    return _sentence(f"{key.replace('_', ' ')}: {_flat(value)}") if value not in ("", None) \
        else ""


def _flat(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(_flat(v) for v in value.values())
    if isinstance(value, list):
        return ", ".join(_flat(v) for v in value)
    return str(value)


def _labelled(label: str) -> Callable[[Any], list[str]]:
    return lambda value: [_sentence(f"{label}: {value}")] if value else []


# One builder per known field: the value -> its sentences, most important first.
_FIELD_SENTENCES: dict[str, Callable[[Any], list[str]]] = {
    "summary": lambda v: [_sentence(v)],
    "subjects": lambda v: [_subject(s) for s in v if isinstance(s, Mapping)],
    "scene": _labelled("scene"),
    "camera": lambda v: [_camera(v)] if isinstance(v, Mapping) else [],
    "lighting": _labelled("lighting"),
    "style": _labelled("style"),
    "timeline": lambda v: [_event(e) for e in v if isinstance(e, Mapping)],
}


def caption_sentences(document: Mapping[str, Any]) -> list[str]:
    """The sentences of a structured caption, highest priority first, empty ones dropped."""
    keys = [k for k in PRIORITY if k in document] + [k for k in document if k not in PRIORITY]
    sentences = []
    for key in keys:
        build = _FIELD_SENTENCES.get(key, lambda v, key=key: [_generic(key, v)])
        sentences += build(document[key])
    return [s for s in sentences if s]


def _cut_to_budget(sentence: str, budget: int, count: Counter) -> str:
    """The longest word prefix of ``sentence`` within ``budget`` (binary search on words)."""
    words = sentence.split()
    low, high = 0, len(words)
    while low < high:
        mid = (low + high + 1) // 2
        if count(" ".join(words[:mid])) <= budget:
            low = mid
        else:
            high = mid - 1
    return " ".join(words[:low])


def render_caption(document: Mapping[str, Any], budget: int, count: Counter = count_words) -> str:
    """The text caption of ``document`` within ``budget`` units of ``count`` (see the module's
    doc for the order and what is dropped first)."""
    sentences = caption_sentences(document)
    if not sentences:
        return ""
    if count(sentences[0]) > budget:  # the most important sentence first, cut if need be
        return _cut_to_budget(sentences[0], budget, count)
    kept = [sentences[0]]
    for sentence in sentences[1:]:
        if count(" ".join([*kept, sentence])) <= budget:
            kept.append(sentence)
    return " ".join(kept)


def render_lengths(document: Mapping[str, Any], lengths: Mapping[str, int],
                   count: Counter = count_words) -> dict[str, str]:
    """One caption per named length: ``{name: render_caption(document, budget)}``."""
    return {name: render_caption(document, budget, count) for name, budget in lengths.items()}
