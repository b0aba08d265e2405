"""The op's structured-caption parameters (``caption_format: json``), parsed once.

``caption_format: json`` makes every backend decode under a JSON Schema (constrained decoding,
each engine's own mechanism: ``backends/grammar.py`` for transformers, structured outputs for
vLLM, ``response_format`` for OpenAI-compatible servers). What the op stores per video:

- the JSON document, as the model wrote it (a string: a user's schema may give documents of any
  shape, and Arrow needs one type per column whatever the shape), in the video's record
  ``caption_json``;
- the text after the video token (or in ``caption_key``): the document rendered at the *first*
  of ``caption_lengths`` (the default length);
- every named length in the video's record ``captions_by_length`` (``{name: text}``), and with
  ``caption_key`` also in the field ``<caption_key>_lengths`` (one ``{name: text}`` per video).

Lengths are counted in words (``captioning/rendering.py`` says why); the rendered text never
exceeds its budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dj_ops.captioning.parameters import CAPTION_FORMATS
from dj_ops.captioning.rendering import parse_caption_lengths, render_lengths
from dj_ops.captioning.structured import JsonSchema, load_schema, parse_strict

# The first is the default length (after the video token): 170 words fit CogVideoX's 226 T5
# tokens at about 1.3 tokens a word; 40 words fit a CLIP-style encoder's 77 tokens.
DEFAULT_CAPTION_LENGTHS = {"long": 170, "short": 40}
ERROR_INVALID_JSON = "invalid_json"


@dataclass(frozen=True)
class RenderedCaption:
    """One structured candidate: the default-length text and its record fields."""

    text: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class StructuredConfig:
    """``caption_format: json``: the schema every caption follows and the named lengths.

    :param schema: the run's one schema object (the default schema, or the user's, checked).
    :param lengths: ``(name, words)`` pairs; the first is the default length.
    """

    schema: JsonSchema
    lengths: tuple[tuple[str, int], ...]

    @property
    def default_length(self) -> str:
        return self.lengths[0][0]

    def provenance(self) -> dict[str, str]:
        """Added to the ``generation`` record (and so, once, to the result store's run key)."""
        return {"caption_format": "json", "json_schema_sha256": self.schema.sha256}

    def render(self, document_text: str) -> RenderedCaption:
        """The candidate's default-length caption and record fields.

        :raises ValueError: the document is not strictly valid under the schema (a token limit
            that cut it: constrained decoding allows nothing else); the message says why.
        """
        error = self.schema.error(document_text)
        if error is not None:
            raise ValueError(f"the structured caption {error}")
        texts = render_lengths(parse_strict(document_text), dict(self.lengths))
        return RenderedCaption(texts[self.default_length],
                               {"caption_json": document_text, "captions_by_length": texts})

    def blank_fields(self) -> dict[str, Any]:
        """The record fields of a video without a caption (same keys and types: one Arrow
        schema for every row)."""
        return {"caption_json": "", "captions_by_length": {name: "" for name, _ in self.lengths}}


def lengths_field(caption_key: str) -> str:
    """The field beside ``caption_key`` holding each video's renderings (json mode)."""
    return f"{caption_key}_lengths"


def output_key(structured: StructuredConfig | None) -> dict[str, str]:
    """The output part of the result store's run key (the schema's hash is in its
    ``generation`` part: :meth:`StructuredConfig.provenance`)."""
    return {"format": "text" if structured is None else "json"}


def parse_structured(caption_format: str, json_schema: dict | str | None,
                     caption_lengths: dict | None) -> StructuredConfig | None:
    """The op's ``caption_format``, ``json_schema`` and ``caption_lengths``, checked together
    (None: text captions).

    :raises ValueError: naming the fix, for an unknown format, a schema or lengths given with
        text captions, an invalid schema, or bad lengths.
    """
    if caption_format not in CAPTION_FORMATS:
        raise ValueError(f"caption_format={caption_format!r} is not supported; choose one of "
                         f"{list(CAPTION_FORMATS)}")
    if caption_format == "text":
        given = [name for name, value in (("json_schema", json_schema),
                                          ("caption_lengths", caption_lengths)) if value]
        if given:
            raise ValueError(f"{' and '.join(given)} apply to structured captions only; set "
                             "caption_format: json, or remove them")
        return None
    lengths = parse_caption_lengths(DEFAULT_CAPTION_LENGTHS if caption_lengths is None
                                    else caption_lengths)
    return StructuredConfig(JsonSchema(load_schema(json_schema)), tuple(lengths.items()))
