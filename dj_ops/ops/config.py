"""The op's parameters, parsed once into typed parts: what the per-process captioner runs on.

:func:`parse_config` checks every parameter against the others and the model (a bad value fails
here, at the op's construction, naming the fix) and returns a :class:`CaptionConfig`:
generation and frames (in the backend's :class:`BackendConfig`), the output policy, the text
layout, and decoding. Nothing here opens a model or a process; a result store is only read
(its format checked).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from data_juicer.utils.resource_utils import is_cuda_available
from loguru import logger

from dj_ops.backends.base import (
    BACKENDS,
    FAST_DECODING_MODES,
    BackendConfig,
    Capabilities,
    backend_class,
)
from dj_ops.backends.streaming import DEFAULT_MAX_IN_FLIGHT
from dj_ops.captioning.generation import (
    GenerationSettings,
    generation_record,
    parse_sampling_params,
)
from dj_ops.captioning.parameters import DEFAULT_PREFETCH, ON_ERROR
from dj_ops.captioning.records import RunInfo
from dj_ops.captioning.selection import SELECTORS
from dj_ops.ops.quality_gate import GateConfig
from dj_ops.ops.structured_config import StructuredConfig
from dj_ops.ops.window_config import WindowConfig, check_window_config
from dj_ops.store import check_store
from dj_ops.video.decoders import resolve_decoder
from dj_ops.video.settings import FrameSettings
from dj_ops.video.thumbnails import ThumbnailSettings

DEFAULT_PROMPT = "Describe the input video in 1-2 sentences."
ROWS_PER_MICRO_BATCH = 16  # default batch_size, in generation_batch_size units


@dataclass(frozen=True, kw_only=True)
class OutputPolicy:
    """What the op writes: ``mode`` (a ``keep_candidate_mode``), the original kept before its
    generated rows, the caption field (None: generated text rows), and what a failed row
    becomes (``on_error``)."""

    mode: str = "random_any"
    keep_original: bool = True
    caption_key: str | None = None
    on_error: str = "keep"


@dataclass(frozen=True, kw_only=True)
class TextLayout:
    """Where a sample keeps its text, videos and meta, its special tokens, and the prompts."""

    text_key: str = "text"
    video_key: str = "videos"
    meta_key: str = "__dj__meta__"
    video_token: str = "<__dj__video>"
    eoc_token: str = "<|__dj__eoc|>"
    special_tokens: tuple[str, ...] = ()
    prompt_key: str | None = None
    prompt: str | None = None  # None: DEFAULT_PROMPT
    system_prompt: str | None = None

    @property
    def default_prompt(self) -> str:
        """The prompt of a sample without its own (``prompt_key``)."""
        return self.prompt or DEFAULT_PROMPT


@dataclass(frozen=True, kw_only=True)
class DecodingConfig:
    """Where and how videos are decoded and fed to the model: the decoder by name, its
    processes (None: the cores of the op process), the per-video timeout, micro-batches decoded
    ahead, torch threads, and the requests a self-batching engine (vLLM, a server) is given at
    once."""

    decoder: str = "pyav"
    workers: int | None = None
    timeout_s: float | None = 120.0
    prefetch: int = DEFAULT_PREFETCH
    torch_threads: int | None = None
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT


@dataclass(frozen=True, kw_only=True)
class StoreConfig:
    """The result store: its path or URL (None: no store; dj_ops.store.kinds), and whether
    videos are identified by a hash of their bytes rather than their path, size and
    modification time."""

    path: str | None = None
    content_hash: bool = False


@dataclass(frozen=True)
class CaptionConfig:
    """Everything one captioning process needs, validated."""

    backend: str
    model: BackendConfig
    capabilities: Capabilities = field(default_factory=Capabilities)  # the backend's, declared
    output: OutputPolicy = field(default_factory=OutputPolicy)
    layout: TextLayout = field(default_factory=TextLayout)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    windows: WindowConfig = field(default_factory=WindowConfig)
    quality: GateConfig = field(default_factory=GateConfig)
    structured: StructuredConfig | None = None  # caption_format json (structured_config.py)
    # which videos keep a strip of their frames in their record, for the run report
    thumbnails: ThumbnailSettings = field(default_factory=ThumbnailSettings)
    timing: bool = False  # each video's record holds its timing (else the same every run)

    @property
    def generation(self) -> GenerationSettings:
        return self.model.settings

    @property
    def frames(self) -> FrameSettings:
        return self.model.frame_settings

    @property
    def run_info(self) -> RunInfo:
        """The provenance shared by every record of this op, generation as the settings say
        (the captioner records it as its loaded backend resolved it)."""
        generation = self.with_caption_format(generation_record(self.generation,
                                                                self.model.seed))
        return RunInfo(self.model.model, self.backend, generation, self.output.mode)

    def with_caption_format(self, generation: dict) -> dict:
        """A ``generation`` record with, in json mode, the caption format and the schema's
        hash (``StructuredConfig.provenance``)."""
        return {**generation, **(self.structured.provenance() if self.structured else {})}


def check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {list(allowed)}")


def resolve_backend(backend: str | None, enable_vllm: bool) -> str:
    """The backend's name: ``backend``, else ``vllm`` with ``enable_vllm``, else
    ``transformers``; checked against the registry (once, here).

    :raises ValueError: for a name no backend is registered under.
    """
    name = backend or ("vllm" if enable_vllm else "transformers")
    check_choice("backend", name, BACKENDS)
    return name


def data_juicer_resources(backend: str, generation_batch_size: int, kwargs: dict) -> dict:
    """The op's Data-Juicer settings (``memory``, ``batch_size``, ``skip_op_error``,
    ``num_proc``, ``num_gpus``) with this op's and the backend's defaults where the recipe
    leaves them."""
    kwargs = dict(kwargs)
    declared = backend_class(backend)
    kwargs.setdefault("memory", declared.memory)
    # Rows per batch: enough micro-batches for decoding to run ahead of generation
    # (memory is bounded by generation_batch_size and prefetch, not by this).
    kwargs.setdefault("batch_size", ROWS_PER_MICRO_BATCH * generation_batch_size)
    # Failures are handled per sample (``on_error``). Data-Juicer's skip_op_error would
    # instead drop a whole batch silently on any exception, so it is off for this op: what
    # escapes process_batched (a model that cannot load, on_error='raise') stops the job.
    kwargs["skip_op_error"] = False
    if declared.capabilities().single_process:
        # An in-process engine (vLLM) takes the GPUs it is given; several GPUs serve one
        # engine through model_params.tensor_parallel_size, not through worker processes.
        if (kwargs.get("num_proc") or 1) > 1:
            logger.info(f"backend {backend!r} runs in one worker process (num_proc 1)")
        kwargs["num_proc"] = 1
    elif is_cuda_available():  # one model replica per GPU (Ray actors, default-executor procs)
        kwargs.setdefault("num_gpus", 1)
    return kwargs


def check_layout(layout: TextLayout, caption_key: str | None) -> None:
    """Refuse a caption field that would overwrite the sample, and empty prompts."""
    if caption_key is not None and caption_key in ("", layout.text_key, layout.video_key,
                                                  layout.meta_key):
        raise ValueError(f"caption_key={caption_key!r} must name a new field, not empty nor "
                         "the text, videos or meta field")
    if layout.prompt is not None and not layout.prompt.strip():
        raise ValueError("prompt is empty; give a prompt or leave it unset for the default")
    if layout.system_prompt is not None and not layout.system_prompt.strip():
        raise ValueError("system_prompt is empty; give a system prompt or leave it unset")


def parse_config(*, backend: str, model: str, caption_num: int, output: OutputPolicy,
                 layout: TextLayout, decoding: DecodingConfig, frames: FrameSettings,
                 model_params: dict | None, sampling_params: dict | None,
                 generation_batch_size: int, seed: int | None,
                 fast_decoding: str = "auto",
                 store: StoreConfig | None = None,
                 windows: WindowConfig | None = None,
                 quality: GateConfig | None = None,
                 structured: StructuredConfig | None = None,
                 thumbnails: ThumbnailSettings | None = None,
                 timing: bool = False) -> CaptionConfig:
    """The op's parameters as one :class:`CaptionConfig` (``backend``: a name
    :func:`resolve_backend` checked).

    :raises ValueError: (or ``ModuleNotFoundError`` for a missing optional package) naming the
        fix, for any parameter that cannot work.
    """
    check_choice("keep_candidate_mode", output.mode, SELECTORS)
    check_choice("on_error", output.on_error, ON_ERROR)
    check_choice("fast_decoding", fast_decoding, FAST_DECODING_MODES)
    check_layout(layout, output.caption_key)
    if layout.prompt and layout.prompt_key:
        logger.warning("Both `prompt` and `prompt_key` are set; `prompt_key` takes precedence.")
    resolve_decoder(decoding.decoder)  # unknown name or missing package: here, not in a worker
    config = BackendConfig(
        model=model, settings=parse_sampling_params(sampling_params, caption_num),
        num_candidates=caption_num, batch_size=generation_batch_size, seed=seed,
        model_params=dict(model_params or {}), frame_settings=frames,
        fast_decoding=fast_decoding,
        json_schema=structured.schema.schema if structured is not None else None,
    )
    declared = backend_class(backend)
    declared.check_config(config)
    capabilities: Capabilities = declared.capabilities(config)
    if structured is not None and not capabilities.structured_output:
        raise ValueError(f"caption_format json needs a backend that decodes under a JSON "
                         f"schema; the {backend!r} backend does not: use caption_format: text")
    store = store or StoreConfig()
    if store.path:  # a store of another format fails here, not in a worker (read only: the
        check_store(store.path)  # captioner of each process opens it)
    windows = check_window_config(
        windows or WindowConfig(), backend=backend, capabilities=capabilities,
        decoder=decoding.decoder, video_start=frames.video_start, video_end=frames.video_end)
    quality = quality or GateConfig()
    return CaptionConfig(backend=backend, model=config, capabilities=capabilities, output=output,
                         layout=layout, decoding=decoding, store=store, windows=windows,
                         quality=quality, structured=structured,
                         thumbnails=thumbnails or ThumbnailSettings(), timing=timing)
