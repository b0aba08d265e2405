"""Generation settings: one normalised form, translated once per backend by pure functions.

Recipes written for Data-Juicer's op use either Hugging Face names (``max_new_tokens``) or vLLM
names (``max_tokens``, ``top_k: -1``); both are accepted and normalised here, and unknown keys are
refused at construction with the list of valid ones (never silently ignored).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

DEFAULT_MAX_NEW_TOKENS = 256
# Used when caption_num > 1 and the recipe sets no sampling: candidates must differ.
DEFAULT_SAMPLING_TEMPERATURE = 0.7
DEFAULT_SAMPLING_TOP_P = 0.9

# Accepted aliases (vLLM / OpenAI spelling -> our field).
ALIASES = {"max_tokens": "max_new_tokens", "min_tokens": "min_new_tokens"}
# Keys Data-Juicer's op sets by default that carry no information for us.
IGNORED_KEYS = {"stop_token_ids"}


@dataclass(frozen=True)
class GenerationSettings:
    """Normalised generation settings shared by every backend.

    ``temperature`` 0 (or ``do_sample`` False) means greedy decoding. ``top_k`` 0 or -1 means
    no top-k filtering.
    """

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    min_new_tokens: int = 0
    do_sample: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    stop: tuple[str, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.do_sample is False or self.temperature == 0

    @property
    def sampled(self) -> bool:
        """Whether candidates are sampled: not greedy, and sampling asked for (``do_sample``
        or a temperature). Unset settings decode greedily."""
        return not self.greedy and bool(self.do_sample or self.temperature)

    def to_json(self) -> str:
        """A stable JSON string of the settings as given (a key for caches)."""
        return json.dumps(asdict(self), sort_keys=True)


VALID_KEYS = sorted({f.name for f in fields(GenerationSettings)} | set(ALIASES) | IGNORED_KEYS)


def parse_sampling_params(params: dict[str, Any] | None, caption_num: int) -> GenerationSettings:
    """Normalise a recipe's ``sampling_params``.

    :param params: the recipe's dict (HF or vLLM spelling), or None.
    :param caption_num: candidates per video; with more than one and no sampling configured,
        sampling is switched on so that the candidates differ.
    :raises ValueError: on unknown keys (naming the valid ones) or out-of-range values.
    """
    params = dict(params or {})
    unknown = sorted(set(params) - set(VALID_KEYS))
    if unknown:
        raise ValueError(
            f"unknown sampling_params key(s) {unknown}; valid keys are {VALID_KEYS}"
        )
    values = {ALIASES.get(k, k): v for k, v in params.items() if k not in IGNORED_KEYS}
    if isinstance(values.get("stop"), str):
        values["stop"] = (values["stop"],)
    elif values.get("stop") is not None:
        values["stop"] = tuple(values["stop"])
    settings = GenerationSettings(**values)
    _check_ranges(settings)
    if caption_num > 1 and settings.do_sample is None and settings.temperature is None:
        settings = replace(
            settings,
            do_sample=True,
            temperature=DEFAULT_SAMPLING_TEMPERATURE,
            top_p=settings.top_p if settings.top_p is not None else DEFAULT_SAMPLING_TOP_P,
        )
    return settings


def _check_ranges(s: GenerationSettings) -> None:
    if s.max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {s.max_new_tokens}")
    if not 0 <= s.min_new_tokens <= s.max_new_tokens:
        raise ValueError(
            f"min_new_tokens must be in [0, max_new_tokens={s.max_new_tokens}], "
            f"got {s.min_new_tokens}"
        )
    if s.temperature is not None and s.temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {s.temperature}")
    if s.top_p is not None and not 0 < s.top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {s.top_p}")


def to_hf_generate_kwargs(s: GenerationSettings, num_candidates: int) -> dict[str, Any]:
    """Keyword arguments for ``transformers`` ``model.generate``.

    Greedy decoding yields one sequence (transformers refuses ``num_return_sequences > 1``
    without sampling): the backend repeats it for each candidate.
    """
    do_sample = s.sampled
    kwargs: dict[str, Any] = {
        "max_new_tokens": s.max_new_tokens,
        "num_return_sequences": sequences_per_prompt(s, num_candidates),
        "do_sample": do_sample,
    }
    if s.min_new_tokens:
        kwargs["min_new_tokens"] = s.min_new_tokens
    if kwargs["do_sample"]:
        if s.temperature is not None:
            kwargs["temperature"] = s.temperature
        if s.top_p is not None:
            kwargs["top_p"] = s.top_p
        if s.top_k is not None:  # -1 (vLLM's "off") and 0 both disable top-k in transformers
            kwargs["top_k"] = max(s.top_k, 0)
    if s.repetition_penalty is not None:
        kwargs["repetition_penalty"] = s.repetition_penalty
    if s.stop:
        kwargs["stop_strings"] = list(s.stop)
    return kwargs


def sequences_per_prompt(s: GenerationSettings, num_candidates: int) -> int:
    """Sequences to ask an engine for per prompt: ``num_candidates`` when sampling; greedy
    decoding yields one, which stands for every candidate (``CaptionResult.repeated``)."""
    return num_candidates if s.sampled else 1


def _optional_fields(s: GenerationSettings) -> dict[str, Any]:
    """The vLLM / OpenAI fields set only when they apply: top-p and top-k when sampling at a
    temperature (top-k off is -1), the repetition penalty and stop strings when given."""
    fields: dict[str, Any] = {}
    sampling = s.sampled and bool(s.temperature)
    if sampling and s.top_p is not None:
        fields["top_p"] = s.top_p
    if sampling and s.top_k is not None:
        fields["top_k"] = s.top_k if s.top_k > 0 else -1
    if s.repetition_penalty is not None:
        fields["repetition_penalty"] = s.repetition_penalty
    if s.stop:
        fields["stop"] = list(s.stop)
    return fields


def to_vllm_sampling_kwargs(
    s: GenerationSettings, num_candidates: int, seed: int | None
) -> dict[str, Any]:
    """Keyword arguments for ``vllm.SamplingParams`` (``n``: ``num_candidates``; the backend asks
    :func:`sequences_per_prompt`)."""
    kwargs: dict[str, Any] = {
        "n": num_candidates,
        "max_tokens": s.max_new_tokens,
        "min_tokens": s.min_new_tokens,
        "temperature": s.temperature if s.sampled else 0.0,
        **_optional_fields(s),
    }
    if seed is not None:
        kwargs["seed"] = seed
    return kwargs


def to_openai_fields(s: GenerationSettings, num_candidates: int,
                     seed: int | None) -> dict[str, Any]:
    """Generation fields of an OpenAI chat-completions payload: OpenAI's names (``n``,
    ``max_tokens``, ``temperature``, ``top_p``, ``stop``, ``seed``) plus vLLM's extensions only
    when set (``min_tokens``, ``top_k``, ``repetition_penalty``)."""
    fields: dict[str, Any] = {
        "n": sequences_per_prompt(s, num_candidates),
        "max_tokens": s.max_new_tokens,
        "temperature": s.temperature if s.sampled else 0.0,
        **_optional_fields(s),
    }
    if s.min_new_tokens:
        fields["min_tokens"] = s.min_new_tokens
    if seed is not None:
        fields["seed"] = seed
    return fields


# What a sampled run used where the settings leave a value open; None for "not applied".
SAMPLING_KNOBS = ("temperature", "top_p", "top_k")


def generation_record(s: GenerationSettings, seed: int | None,
                      applied: dict[str, Any] | None = None) -> dict[str, Any]:
    """What generation ran with, for the provenance record.

    Every key is always there and typed alike in every row (floats as floats, ``None`` where a
    knob does not apply), so Arrow infers one struct for the column: greedy decoding records
    ``do_sample: False`` and no temperature, top_p or top_k.

    :param applied: values the backend resolved where ``s`` leaves them open (for example the
        model's own ``generation_config`` in transformers: its ``top_k`` when sampling, its
        ``repetition_penalty``); ``None`` values are ignored.
    """
    values = {"temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k,
              "repetition_penalty": s.repetition_penalty}
    values.update({k: v for k, v in (applied or {}).items() if k in values and v is not None})
    if not s.sampled:
        values.update(dict.fromkeys(SAMPLING_KNOBS))
    as_float = {k: None if values[k] is None else float(values[k])
                for k in ("temperature", "top_p", "repetition_penalty")}
    return {
        "do_sample": s.sampled,
        "max_new_tokens": int(s.max_new_tokens),
        "min_new_tokens": int(s.min_new_tokens),
        **as_float,
        "top_k": None if values["top_k"] is None else int(values["top_k"]),
        "stop": list(s.stop),
        "seed": seed,
    }
