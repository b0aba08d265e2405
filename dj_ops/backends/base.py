"""The one interface every generation backend implements, and the registry that names them.

A backend takes a list of caption requests and returns one :class:`CaptionResult` per request,
in the same order, each holding ``num_candidates`` candidates or an error record. Backends are
registered as lazy ``module:Class`` paths so that torch, vLLM or an HTTP client is imported only
when that backend is chosen.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any

from dj_ops.backends.model_params import (  # noqa: F401 - the key, named here for backends
    PROCESSOR_KWARGS_KEY,
    ModelParams,
    parse_model_params,
)
from dj_ops.captioning.generation import GenerationSettings, generation_record

# The contract's values live in captioning/ (adapters use them too); named here for backends.
from dj_ops.captioning.requests import Candidate, CaptionRequest, CaptionResult  # noqa: F401
from dj_ops.lazy_import import load_entry

# Kinds of per-request failures that backends record on the sample. CONTEXT_LENGTH: the prompt
# does not fit the model's context (also a video's when even its fewest, smallest frames cannot
# fit the budget, see dj_ops.video.budget; defined there).
from dj_ops.video.errors import CONTEXT_LENGTH  # noqa: F401
from dj_ops.video.settings import FrameSettings

INVALID_REQUEST = "invalid_request"  # the engine or server refused the request
TIMEOUT = "timeout"  # no answer in time (after retries)
HTTP_ERROR = "http_error"  # the server answered with an error status
CONNECTION_ERROR = "connection_error"  # the server could not be reached
BAD_RESPONSE = "bad_response"  # the answer does not follow the API


FAST_DECODING_MODES = ("auto", "off")


@dataclass(frozen=True)
class BackendConfig:
    """What every backend is built from (the op's parameters, validated)."""

    model: str
    settings: GenerationSettings
    num_candidates: int = 1
    batch_size: int = 8
    seed: int | None = None
    model_params: dict[str, Any] = field(default_factory=dict)
    frame_settings: FrameSettings = field(default_factory=FrameSettings)
    fast_decoding: str = "auto"  # transformers' checked speed-ups: 'auto' or 'off'
    # caption_format json: the JSON Schema every caption is decoded under (None: free text)
    json_schema: dict[str, Any] | None = None

    @functools.cached_property
    def params(self) -> ModelParams:
        """``model_params`` parsed once into the adapter's and the backend's parts."""
        return parse_model_params(self.model_params)


def request_config(config: BackendConfig, request: CaptionRequest) -> BackendConfig:
    """``config`` as ``request`` asks to run: its own settings (a quality-gate retry's) and its
    seed moved on by its attempt number (so that each retry samples afresh, reproducibly);
    ``config`` itself for a plain request.

    Every backend reads a request's settings through this, so none ignores them.
    """
    if request.settings is None and not request.attempt:
        return config
    seed = None if config.seed is None else config.seed + request.attempt
    return replace(config, settings=request.settings or config.settings, seed=seed)


def check_model_params(backend: str, params: dict[str, Any], valid: frozenset[str]) -> None:
    """Refuse ``model_params`` keys the backend does not know, naming the valid ones.

    :raises ValueError: on unknown keys (a typo must not be ignored silently).
    """
    unknown = sorted(set(params) - valid)
    if unknown:
        raise ValueError(
            f"unknown model_params key(s) {unknown} for the {backend!r} backend; "
            f"valid keys are {sorted(valid)}"
        )


class CaptionBackend(ABC):
    """Generate ``num_candidates`` captions for each request."""

    name: str = ""
    # The backend's engine takes every GPU it is given: run one worker process (num_proc 1).
    single_process: bool = False
    # Frame sides must be multiples of this (the model's patch factor: 28 for Qwen2.5-VL, 32 for
    # Qwen3-VL), known once the backend is built; None: the op's frame settings decide.
    size_factor: int | None = None
    # The ``model_params`` keys this backend understands; others are refused at construction.
    # None: the backend checks them itself (vLLM hands them to its engine arguments).
    model_param_keys: frozenset[str] | None = frozenset()
    # The most tokens one request may hold, prompt and answer (vLLM's ``max_model_len``, a
    # server's advertised limit), known once the backend is built; None: not known. The op fits
    # each video's frames to what the text leaves (dj_ops.ops.frame_budget).
    context_limit: int | None = None

    def __init__(self, config: BackendConfig, device: str = "cpu"):
        self.config = config
        self.device = device

    @classmethod
    def check_config(cls, config: BackendConfig) -> None:
        """Fail at the op's construction, with the fix in the message, when ``config`` cannot
        work (unknown ``model_params`` keys, a model that cannot be found, ...). Called in the
        driver, before any worker; subclasses extend it and call ``super().check_config``."""
        if cls.model_param_keys is not None:
            check_model_params(cls.name, config.model_params, cls.model_param_keys)

    @abstractmethod
    def generate(self, requests: list[CaptionRequest]) -> list[CaptionResult]:
        """One result per request, in the order of ``requests``."""

    def text_tokens(self, text: str) -> int:
        """Tokens of ``text`` in the model's tokenizer (at most: a bound is fine), for backends
        with a :attr:`context_limit`."""
        raise NotImplementedError(f"the {self.name!r} backend declares no context limit")

    def generation_record(self) -> dict[str, Any]:
        """What generation runs with, for provenance; backends that resolve more (a model's
        own generation defaults) override it."""
        return generation_record(self.config.settings, self.config.seed)

    def describe(self) -> dict[str, str]:
        """Identity for provenance records."""
        return {"backend": self.name, "model": self.config.model}


# name -> ("module:Class", pip extra that provides its optional dependency or "")
BACKENDS: dict[str, tuple[str, str]] = {
    "transformers": ("dj_ops.backends.transformers_backend:TransformersBackend", ""),
    "vllm": ("dj_ops.backends.vllm_backend:VLLMBackend", "vllm"),
    "openai": ("dj_ops.backends.openai_backend:OpenAIBackend", ""),
}


def backend_class(name: str) -> type[CaptionBackend]:
    """Import the backend registered as ``name``.

    :raises ValueError: for an unknown name (listing the registered ones).
    :raises ModuleNotFoundError: when the backend's optional package is missing, naming the
        pip extra to install.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}")
    path, extra = BACKENDS[name]
    return load_entry(path, what=f"the {name!r} backend", extra=extra)


def build_backend(name: str, config: BackendConfig, device: str = "cpu") -> CaptionBackend:
    """Build a backend; used as Data-Juicer model-zoo loader (``get_model`` passes ``device``)."""
    return backend_class(name)(config, device=device)
