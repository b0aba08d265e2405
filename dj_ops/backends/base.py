"""The declared backend contract (:class:`CaptionBackend`, :class:`Capabilities`) and the
registry that names the backends.

A backend takes a list of caption requests and returns one :class:`CaptionResult` per request,
in the same order, each holding ``num_candidates`` candidates or an error record. What the op,
the frame budget and the windows may use of a backend is declared on :class:`CaptionBackend`
and nothing else: capabilities are flags (:class:`Capabilities`), never found by ``getattr`` or
by a backend's name. Backends are registered as lazy ``module:Class`` paths so that torch, vLLM
or an HTTP client is imported only when that backend is chosen.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from dj_ops.adapters.registry import parse_model_params
from dj_ops.backends.model_params import (  # noqa: F401 - the key, named here for backends
    PROCESSOR_KWARGS_KEY,
    ModelParams,
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

if TYPE_CHECKING:
    from dj_ops.adapters.base import ModelAdapter
    from dj_ops.backends.streaming import StreamSession

INVALID_REQUEST = "invalid_request"  # the engine or server refused the request
TIMEOUT = "timeout"  # no answer in time (after retries)
HTTP_ERROR = "http_error"  # the server answered with an error status
CONNECTION_ERROR = "connection_error"  # the server could not be reached
BAD_RESPONSE = "bad_response"  # the answer does not follow the API


FAST_DECODING_MODES = ("auto", "off")
# The frames of a request whose text alone is counted (prompt_tokens).
NO_FRAMES = np.zeros((0, 0, 0, 3), dtype=np.uint8)


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


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, declared (the op, the frame budget and the windows read these,
    never a backend's own attributes).

    :param streams: fed one request at a time (:meth:`CaptionBackend.open_stream`): the op
        keeps up to ``max_in_flight`` requests in it instead of calling :meth:`generate` per
        micro-batch.
    :param single_process: its engine takes every GPU it is given: the op runs in one worker
        process (several GPUs serve one engine through its own arguments).
    :param merge_model: a text-only request may name another model (``CaptionRequest.model``,
        the windows' ``merge_model``) that the backend serves without loading it.
    :param structured_output: decodes under a JSON schema (``caption_format: json``).
    :param sends_frames: the model sees the request's frames (so a window's frames, or frames
        fitted to a budget, are what it captions); False when it reads the video file itself.
    """

    streams: bool = False
    single_process: bool = False
    merge_model: bool = False
    structured_output: bool = True
    sends_frames: bool = True


class CaptionBackend(ABC):
    """The backend contract: everything the op, the frame budget and the windows may use.

    Class level (known before the backend is built): :attr:`name`, :attr:`model_param_keys`,
    :attr:`memory` and :meth:`capabilities` / :meth:`check_config` of a configuration.
    Instance level (known once built): :attr:`config`, :attr:`device`, :attr:`adapter` (the
    model family's facts), :attr:`size_factor`, :attr:`context_limit`,
    :attr:`concurrency_limit`; :meth:`generate` (a micro-batch), :meth:`generate_text` (text
    only), :meth:`open_stream` (continuous feeding, when the capabilities say ``streams``),
    token counting (:meth:`text_tokens`, :meth:`prompt_tokens`, :meth:`frame_text_tokens`,
    :attr:`counts_visual_tokens`), :meth:`generation_record`, :meth:`describe` and
    :meth:`close`. Whoever builds a backend owns it and closes it (also as a context manager).
    """

    name: ClassVar[str] = ""
    # What the backend can do (see :class:`Capabilities`; :meth:`capabilities` may refine it
    # per configuration).
    CAPABILITIES: ClassVar[Capabilities] = Capabilities()
    # The ``model_params`` keys this backend understands; others are refused at construction.
    # None: the backend checks them itself (vLLM hands them to its engine arguments).
    model_param_keys: ClassVar[frozenset[str] | None] = frozenset()
    # Data-Juicer's ``memory`` for one op process of this backend (the recipe's own wins).
    memory: ClassVar[str] = "4GB"

    # Known once built. The model family's facts (dj_ops.adapters).
    adapter: ModelAdapter
    # Frame sides must be multiples of this (the model's patch factor: 28 for Qwen2.5-VL, 32 for
    # Qwen3-VL); None: the op's frame settings decide.
    size_factor: int | None = None
    # The most tokens one request may hold, prompt and answer (vLLM's ``max_model_len``, a
    # server's advertised limit); None: not known. The op fits each video's frames to what the
    # text leaves (dj_ops.ops.frame_budget).
    context_limit: int | None = None
    # How many requests the backend itself lets run at once (None: no limit of its own); a
    # streaming op keeps min(this, its max_in_flight) in flight.
    concurrency_limit: int | None = None

    def __init__(self, config: BackendConfig, device: str = "cpu"):
        self.config = config
        self.device = device

    @classmethod
    def capabilities(cls, config: BackendConfig | None = None) -> Capabilities:
        """What this backend can do with ``config`` (None: with any configuration)."""
        return cls.CAPABILITIES

    @classmethod
    def check_config(cls, config: BackendConfig) -> None:
        """Fail at the op's construction, with the fix in the message, when ``config`` cannot
        work (unknown ``model_params`` keys, a model that cannot be found, ...). Called in the
        driver, before any worker; subclasses extend it and call ``super().check_config``."""
        if cls.model_param_keys is not None:
            check_model_params(cls.name, config.model_params, cls.model_param_keys)

    @abstractmethod
    def generate(self, requests: list[CaptionRequest]) -> list[CaptionResult]:
        """One result per request, in the order of ``requests`` (a micro-batch; requests with
        ``frames`` None are text only)."""

    def generate_text(self, requests: list[CaptionRequest]) -> list[CaptionResult]:
        """Text-only generation (a long video's merge; a caption rewrite): one result per
        request, in order. Every request must be text only (:func:`text_request`)."""
        if any(request.frames is not None for request in requests):
            raise ValueError("generate_text takes text-only requests (frames None)")
        return self.generate(requests)

    def open_stream(self) -> StreamSession:
        """A session fed one request at a time (``capabilities().streams`` backends)."""
        raise NotImplementedError(f"the {self.name!r} backend does not stream; use generate")

    @property
    def counts_visual_tokens(self) -> bool:
        """Whether a video's tokens follow from its frame count and size (the model family's
        fact), so that frames can be fitted to a budget."""
        return self.adapter.counts_visual_tokens

    def text_tokens(self, text: str) -> int:
        """Tokens of ``text`` in the model's tokenizer (at most: a bound is fine), for backends
        with a :attr:`context_limit`."""
        raise NotImplementedError(f"the {self.name!r} backend declares no context limit")

    def prompt_tokens(self, prompt: str, system_prompt: str | None) -> int:
        """Tokens a one-video request with ``prompt`` holds besides its video: the prompt in
        the family's chat format (what the backend sends, or what the server's template
        renders) less its one video placeholder. For :attr:`counts_visual_tokens` families."""
        request = CaptionRequest(NO_FRAMES, {}, prompt, system_prompt)
        return self.text_tokens(self.adapter.prompt(request)) - 1

    def frame_text_tokens(self) -> int:
        """Text tokens the prompt gains per temporal group of frames besides its vision tokens
        (Qwen3-VL's timestamps), counted against a context's budget (0: none)."""
        text = self.adapter.frame_text
        return self.text_tokens(text) if text else 0

    def generation_record(self) -> dict[str, Any]:
        """What generation runs with, for provenance; backends that resolve more (a model's
        own generation defaults) override it."""
        return generation_record(self.config.settings, self.config.seed)

    def describe(self) -> dict[str, str]:
        """Identity for provenance records."""
        return {"backend": self.name, "model": self.config.model}

    def close(self) -> None:
        """Release what the backend holds (an engine's processes, a server session); the
        owner's way to stop it. Idempotent; the backend is not used afterwards."""

    def __enter__(self) -> CaptionBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def text_request(prompt: str, system_prompt: str | None = None,
                 model: str | None = None) -> CaptionRequest:
    """A text-only request (no video): for :meth:`CaptionBackend.generate_text`."""
    return CaptionRequest(None, {}, prompt, system_prompt, model=model)


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
