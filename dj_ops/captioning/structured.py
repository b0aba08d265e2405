"""Structured (JSON) video captions: the default schema, user schemas, strict validation.

The default schema asks for what text-to-video data builders filter and balance on: subjects
(appearance, action), scene, camera (shot type, angle, motion), lighting, style, a timeline of
events with start/end seconds, and a one-sentence summary.

Every string and array is bounded (``maxLength``, ``maxItems``) and numbers are bounded too: under
constrained decoding, the grammar then guarantees that a document ends within a known number of
tokens, whatever the weights (a random-weight model never chooses to close a string; it hits
``maxLength``). :data:`DEFAULT_SCHEMA_MAX_TOKENS` is that bound for the default schema.

Validation is strict: ``json.loads`` as the standard defines JSON (no raw control characters in
strings, no NaN), then the ``jsonschema`` validator of the schema's draft.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections import OrderedDict
from pathlib import Path
from typing import Any

import jsonschema

SHOT_TYPES = ("extreme close-up", "close-up", "medium close-up", "medium", "medium wide",
              "wide", "extreme wide")
CAMERA_ANGLES = ("eye level", "high angle", "low angle", "overhead", "dutch angle",
                 "point of view")
CAMERA_MOTIONS = ("static", "pan", "tilt", "zoom in", "zoom out", "dolly", "tracking",
                  "handheld", "orbit", "aerial")
# A clip longer than a day is no clip: the bound keeps numbers a few digits long.
MAX_SECONDS = 86400
# Document verdicts a JsonSchema keeps (a batch's candidates, and their retries, many times over).
VERDICTS_KEPT = 4096


def _text(max_length: int, description: str) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": max_length,
            "description": description}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    """An object with every property required and no other (what strict structured-output
    modes, OpenAI's included, ask for)."""
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


_SECONDS = {"type": "number", "minimum": 0, "maximum": MAX_SECONDS}

DEFAULT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "VideoCaption",
    **_object({
        "summary": _text(200, "One sentence describing the whole clip."),
        "subjects": {"type": "array", "minItems": 0, "maxItems": 3, "items": _object({
            "name": _text(40, "What the subject is, in a few words."),
            "appearance": _text(120, "How it looks: colour, size, clothing, texture."),
            "action": _text(120, "What it does during the clip."),
        })},
        "scene": _text(160, "Where the clip takes place, and the background."),
        "camera": _object({
            "shot_type": {"enum": list(SHOT_TYPES)},
            "angle": {"enum": list(CAMERA_ANGLES)},
            "motion": {"enum": list(CAMERA_MOTIONS)},
        }),
        "lighting": _text(80, "Light sources, time of day, contrast."),
        "style": _text(80, "Visual style: live action, animation, film look, colour grade."),
        "timeline": {"type": "array", "minItems": 0, "maxItems": 6, "items": _object({
            "start": _SECONDS,
            "end": _SECONDS,
            "event": _text(120, "What happens between start and end."),
        })},
    }),
}


def _max_chars(schema: dict[str, Any]) -> int:
    """An upper bound on the characters of a compact JSON document under ``schema`` (the
    default's shapes only: objects with fixed keys, bounded arrays, strings, enums, numbers)."""
    if "enum" in schema:
        return max(len(json.dumps(v)) for v in schema["enum"])
    kind = schema.get("type")
    if kind == "string":  # an escape such as \u001f takes 6 characters for 1
        return 2 + 6 * schema["maxLength"]
    if kind == "number":  # digits of the maximum, a sign, a fraction and an exponent
        return len(str(schema["maximum"])) + 24
    if kind == "array":
        return 2 + schema["maxItems"] * (_max_chars(schema["items"]) + 1)
    if kind == "object":
        return 2 + sum(len(json.dumps(k)) + 2 + _max_chars(v)
                       for k, v in schema["properties"].items())
    raise ValueError(f"no size bound for schema part {schema}")


# Each token holds at least one character: the characters bound the tokens.
DEFAULT_SCHEMA_MAX_TOKENS = _max_chars(DEFAULT_SCHEMA)


def load_schema(schema: dict[str, Any] | str | Path | None) -> dict[str, Any]:
    """The JSON schema a recipe gives: ``None`` (the default schema), an inline dict, or the path
    of a ``.json`` file.

    :raises ValueError: a missing or unreadable file, text that is not JSON, a schema that is
        not an object or that its draft's meta-schema refuses; the message names the fix.
    """
    if schema is None:
        return DEFAULT_SCHEMA
    source = "the inline json_schema"
    if isinstance(schema, str | Path):
        path = Path(schema)
        source = f"json_schema file {str(path)!r}"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ValueError(f"{source} cannot be read ({error.strerror or error}); give the "
                             "path of a JSON Schema file, or the schema inline as a dict") from None
        try:
            schema = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{source} is not JSON: {error}") from None
    if not isinstance(schema, dict):
        raise ValueError(f"{source} must be a JSON object (a JSON Schema), got "
                         f"{type(schema).__name__}")
    validator = jsonschema.validators.validator_for(schema)
    try:
        validator.check_schema(schema)
    except jsonschema.SchemaError as error:
        raise ValueError(f"{source} is not a valid JSON Schema: {error.message} "
                         f"(at {'/'.join(map(str, error.absolute_path)) or 'the top'})") from None
    if schema.get("type") != "object":
        raise ValueError(f"{source} must describe an object (\"type\": \"object\"): a caption "
                         "is rendered from named fields")
    return schema


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def parse_strict(text: str) -> Any:
    """``json.loads`` as the JSON standard reads it: raw control characters inside strings and
    the non-standard ``NaN``/``Infinity`` are refused.

    :raises ValueError: (``json.JSONDecodeError`` included) when ``text`` is not strict JSON.
    """
    return json.loads(text, strict=True, parse_constant=_refuse_constant)


def validation_error(text: str, schema: dict[str, Any]) -> str | None:
    """Why ``text`` is not a strictly valid JSON document under ``schema``, or None if it is."""
    try:
        document = parse_strict(text)
    except ValueError as error:
        return f"not strict JSON: {error}"
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(document))
    if error is not None:
        where = "/".join(map(str, error.absolute_path)) or "the top"
        return f"does not match the schema at {where}: {error.message}"
    if any(isinstance(v, float) and not math.isfinite(v) for v in _numbers(document)):
        return "holds a number that is not finite"
    return None


class JsonSchema:
    """The one schema object of a run: every part that needs the schema (the backends' decoding,
    the quality gate, the rendering, provenance and the result store's key) holds this object,
    its hash is computed once, and each document text is validated once (the verdicts of the
    latest :data:`VERDICTS_KEPT` texts are kept: the gate's check and the rendering of the same
    candidate read one verdict).

    :param schema: a checked JSON Schema (:func:`load_schema`).
    """

    def __init__(self, schema: dict[str, Any]):
        self.schema = schema
        self._verdicts: OrderedDict[str, str | None] = OrderedDict()

    @functools.cached_property
    def sha256(self) -> str:
        """A stable hash of the schema (keys sorted): what provenance names."""
        text = json.dumps(self.schema, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def error(self, text: str) -> str | None:
        """Why ``text`` is not a strictly valid document under the schema, or None if it is."""
        if text not in self._verdicts:
            self._verdicts[text] = validation_error(text, self.schema)
            if len(self._verdicts) > VERDICTS_KEPT:
                self._verdicts.popitem(last=False)
        return self._verdicts[text]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JsonSchema) and other.sha256 == self.sha256

    def __hash__(self) -> int:
        return hash(self.sha256)


def _numbers(value: Any):
    if isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from _numbers(v)
    elif isinstance(value, float):
        yield value
