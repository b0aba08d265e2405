"""vLLM backend: an in-process ``vllm.LLM`` engine, fed one video at a time.

Each video is one request asking for ``SamplingParams(n=caption_num)``. The op hands a video to
the engine as soon as it is decoded and keeps up to ``max_in_flight`` requests in the engine,
which batches them itself (continuous batching); see :mod:`dj_ops.backends.vllm_stream`.
``generate`` (a list in, a list out) submits the whole list at once. The engine is built once per
worker (the op loads backends through Data-Juicer's model zoo) and takes the GPUs it is given, so
the op runs it in one worker process; several GPUs serve one engine through
``model_params.tensor_parallel_size``. Videos go in as already-sampled frames with their metadata
(see :mod:`dj_ops.backends.vllm_requests` and the family adapters). A request that cannot fit the
model's context fails alone, with a ``context_length`` record. An engine that dies is rebuilt
once per death and the requests in flight are retried.
"""

from __future__ import annotations

import functools
import gc

import vllm
from loguru import logger

from dj_ops.adapters import resolve_adapter
from dj_ops.backends.base import (
    BackendConfig,
    Capabilities,
    CaptionBackend,
    CaptionRequest,
    request_config,
)
from dj_ops.backends.engine_watchdog import watch_engine
from dj_ops.backends.streaming import StreamingBackend, StreamSession
from dj_ops.backends.vllm_requests import (
    check_vllm_config,
    engine_kwargs,
    sampling_kwargs,
)
from dj_ops.backends.vllm_stream import VLLMStream


def engine_max_model_len(llm) -> int:
    """The context length the engine was built with."""
    engine = llm.llm_engine
    model_config = getattr(engine, "model_config", None) or engine.vllm_config.model_config
    return int(model_config.max_model_len)


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def _final_only(params: vllm.SamplingParams) -> vllm.SamplingParams:
    """Ask the engine for each request's output once, when it is finished (as ``LLM.generate``
    does), not after every step."""
    from vllm.sampling_params import RequestOutputKind

    params.output_kind = RequestOutputKind.FINAL_ONLY
    return params


def _structured_outputs(config: BackendConfig):
    """caption_format json: the schema for the engine's structured outputs (built with the
    guidance backend, ``vllm_requests.STRUCTURED_OUTPUTS_CONFIG``); None for free text."""
    if config.json_schema is None:
        return None
    from vllm.sampling_params import StructuredOutputsParams

    return StructuredOutputsParams(json=config.json_schema)


class VLLMBackend(StreamingBackend, CaptionBackend):
    """Captions with an in-process ``vllm.LLM`` engine."""

    name = "vllm"
    # fed continuously; the engine takes every GPU it is given (one worker process)
    CAPABILITIES = Capabilities(streams=True, single_process=True)
    model_param_keys = None  # every key but the adapter's is a vLLM engine argument
    memory = "20GB"

    def __init__(self, config: BackendConfig, device: str = "cpu"):
        super().__init__(config, device)
        self.adapter = resolve_adapter(config.model, config.params)
        self.engine_kwargs = engine_kwargs(config, self.adapter)
        self.llm = None
        self.llm = self._build_engine()
        # On CPU, vLLM 0.32's engine dies ("CPU Generator does not use offset") when a request
        # with its own seed meets chunked prefill; there the seed goes to the engine only
        # (engine_kwargs), which makes sampled captions depend on how requests are batched.
        self.sampling_params = _final_only(vllm.SamplingParams(
            **sampling_kwargs(config, per_request_seed=not _on_cpu()),
            structured_outputs=_structured_outputs(config)))
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = engine_max_model_len(self.llm)
        self.context_limit = self.max_model_len
        self.size_factor = self.adapter.size_factor
        self.engine_restarts = 0

    def request_sampling_params(self, request: CaptionRequest) -> vllm.SamplingParams:
        """The sampling parameters of ``request``: the configured ones, or its own (a
        quality-gate retry's, see ``request_config``)."""
        config = request_config(self.config, request)
        if config is self.config:
            return self.sampling_params
        return _final_only(vllm.SamplingParams(
            **sampling_kwargs(config, per_request_seed=not _on_cpu())))

    @classmethod
    def check_config(cls, config: BackendConfig) -> None:
        check_vllm_config(config)

    @functools.cached_property
    def _processor(self):
        """The model's processor, loaded only for adapters that render its chat template."""
        import transformers

        remote = bool(self.config.model_params.get("trust_remote_code", False))
        return transformers.AutoProcessor.from_pretrained(self.config.model,
                                                          trust_remote_code=remote)

    def render(self, messages: list[dict]) -> str:
        return self._processor.apply_chat_template(messages, tokenize=False,
                                                   add_generation_prompt=True)

    def text_tokens(self, text: str) -> int:
        """Exact: through the engine's own tokenizer."""
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def open_stream(self) -> StreamSession:
        return VLLMStream(self)

    @staticmethod
    def is_engine_dead(error: BaseException) -> bool:
        """Whether ``error`` means the engine is gone (as opposed to one bad request)."""
        from vllm.v1.engine.exceptions import EngineDeadError

        return isinstance(error, EngineDeadError)

    def close(self) -> None:
        """Stop the engine's processes (the owner's way; a process killed before it closes
        leaves them to the watchdog, :func:`~dj_ops.backends.engine_watchdog.watch_engine`)."""
        self.shut_down()

    def shut_down(self, kill: bool = False) -> None:
        """Stop the engine's processes; ``kill``: at once (SIGKILL)."""
        if self.llm is None:
            return
        core = self.llm.llm_engine.engine_core
        if kill:
            for process in _engine_processes(self.llm):
                try:
                    process.kill()  # its worker process exits when it sees its parent gone
                except (OSError, ValueError):  # gone already
                    pass
        try:
            core.shutdown()
        except BaseException as error:  # noqa: BLE001 - best effort: the engine is stopping
            logger.debug(f"shutting the vLLM engine down failed: {error!r}")
        self.llm = None
        gc.collect()

    def restart_engine(self) -> None:
        """Shut the dead engine down and build a new one with the same arguments."""
        self.engine_restarts += 1
        logger.warning(f"rebuilding the vLLM engine (restart {self.engine_restarts})")
        self.shut_down()
        self.llm = self._build_engine()
        self.tokenizer = self.llm.get_tokenizer()

    def _build_engine(self):
        """A new engine, with a watchdog that kills its processes if this one ends abruptly."""
        with watch_engine() as watchdog:  # started before the engine: covers its start too
            llm = vllm.LLM(**self.engine_kwargs)
            watchdog.engine_started([process.pid for process in _engine_processes(llm)])
        return llm


def _engine_processes(llm) -> list:
    """The engine-core processes of ``llm`` (none for an engine in this process)."""
    core = llm.llm_engine.engine_core
    manager = getattr(getattr(core, "resources", None), "engine_manager", None)
    return list(getattr(manager, "processes", None) or [])
