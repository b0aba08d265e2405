"""Pure request building for the vLLM backend (nothing here imports vLLM).

Engine arguments come from ``model_params`` plus what the frame settings imply; each video is one
``{"prompt", "multi_modal_data"}`` request built by the family's builder (``vllm_prompts.py``);
all requests of a batch share one ``SamplingParams(n=caption_num)``; prompts that cannot fit
the context are refused before they reach the engine; vLLM's outputs become
:class:`CaptionResult` objects.
"""

from __future__ import annotations

from typing import Any

from dj_ops.adapters import ModelAdapter, resolve_adapter
from dj_ops.backends.base import (
    CONTEXT_LENGTH,
    INVALID_REQUEST,
    BackendConfig,
    Candidate,
    CaptionRequest,
    CaptionResult,
)
from dj_ops.backends.model_source import check_model_source
from dj_ops.backends.quantization import vllm_quantization_kwargs
from dj_ops.backends.vllm_prompts import PromptRenderer, vllm_prompts_for
from dj_ops.captioning.generation import sequences_per_prompt, to_vllm_sampling_kwargs

# One engine per worker on one GPU unless model_params say otherwise.
ENGINE_DEFAULTS: dict[str, Any] = {"tensor_parallel_size": 1}
# caption_format json: llguidance (vLLM's "guidance" backend), compact JSON. vLLM's default,
# xgrammar, let raw control characters into strings (not strict JSON), and with whitespace allowed
# a random-weight model spends its tokens on "\n\t" runs (docs/findings.md).
STRUCTURED_OUTPUTS_CONFIG: dict[str, Any] = {"backend": "guidance",
                                             "disable_any_whitespace": True}
# Words of vLLM's error for a prompt longer than the context (``max_model_len``): the engine's
# and, for the openai backend, its server's ("This model's maximum context length is ...").
CONTEXT_ERROR_MARKERS = ("maximum model length", "max_model_len", "maximum context length")


def engine_kwargs(config: BackendConfig, adapter: ModelAdapter) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM``.

    ``model_params`` pass through (``tensor_parallel_size``, ``max_model_len``,
    ``gpu_memory_utilization``, ``dtype``, ...) and win over the defaults, except the keys read
    here: ``processor_kwargs`` (merged into ``mm_processor_kwargs``), ``quantization`` and the
    adapter's keys.
    """
    params, processor_kwargs = config.params.loader, config.params.processor_kwargs
    quantization = vllm_quantization_kwargs(config.params.quantization)
    settings, family = config.frame_settings, vllm_prompts_for(adapter)
    kwargs = {
        "model": config.model,
        **ENGINE_DEFAULTS,
        "limit_mm_per_prompt": family.limit_mm_per_prompt(settings),
        "mm_processor_kwargs": {**family.mm_processor_kwargs(settings),
                                **processor_kwargs},
        **quantization,
        **params,
    }
    if config.seed is not None:
        kwargs.setdefault("seed", config.seed)
    if config.json_schema is not None:  # a recipe's own structured_outputs_config wins
        kwargs.setdefault("structured_outputs_config", dict(STRUCTURED_OUTPUTS_CONFIG))
    return kwargs


def check_vllm_config(config: BackendConfig) -> ModelAdapter:
    """The model's adapter, once ``config`` is known to suit vLLM.

    :raises ValueError: for a family vLLM does not serve, bad adapter parameters or a
        quantization mode vLLM does not offer.
    """
    check_model_source(config.model)
    adapter = resolve_adapter(config.model, config.params)
    adapter.check(config.model_params)
    engine_kwargs(config, adapter)  # a family vLLM does not serve has no builder: refused
    return adapter


def sampling_kwargs(config: BackendConfig, per_request_seed: bool = True) -> dict[str, Any]:
    """Keyword arguments for ``vllm.SamplingParams``: ``n=caption_num`` when sampling; greedy
    decoding asks for one sequence, which stands for every candidate.

    :param per_request_seed: give each request the op's seed (reproducible whatever the
        batching); False leaves the seed to the engine (``engine_kwargs``), for platforms whose
        engine cannot take per-request seeds (vLLM 0.32 on CPU, see docs/findings.md).
    """
    seed = config.seed if per_request_seed else None
    kwargs = to_vllm_sampling_kwargs(config.settings, config.num_candidates, seed)
    kwargs["n"] = sequences_per_prompt(config.settings, config.num_candidates)
    return kwargs


def build_request(adapter: ModelAdapter, request: CaptionRequest,
                  render: PromptRenderer | None = None) -> dict[str, Any]:
    """One vLLM prompt dict for one video."""
    family = vllm_prompts_for(adapter)
    built: dict[str, Any] = {"prompt": family.prompt(request, render)}
    if request.frames is None:  # text only (a long video's merge)
        return built
    built["multi_modal_data"] = {"video": [family.video(request)]}
    per_request = family.request_processor_kwargs(request)
    if per_request:
        built["mm_processor_kwargs"] = per_request
    return built


def check_context(adapter: ModelAdapter, request: CaptionRequest, text_tokens: int,
                  max_model_len: int) -> CaptionResult | None:
    """A ``context_length`` failure when the prompt cannot leave room for one new token.

    :param text_tokens: tokens of the prompt string, its video placeholder token included.
    :returns: None when the request may fit (the engine still has the last word).
    """
    if request.frames is None:
        return None  # text only: the engine checks its length
    video_tokens = adapter.video_tokens_lower_bound(request.frames.shape)
    needed = text_tokens - 1 + max(video_tokens, 1)  # the placeholder becomes the video
    if needed < max_model_len:
        return None
    return CaptionResult.failure(
        CONTEXT_LENGTH,
        f"the prompt needs at least {needed} tokens ({video_tokens} for the video of "
        f"{len(request.frames)} frames of {request.frames.shape[2]}x{request.frames.shape[1]}) "
        f"but max_model_len is {max_model_len}: lower max_frames / max_pixels / total_pixels "
        "or raise model_params.max_model_len",
    )


def is_context_error(message: str) -> bool:
    """Whether vLLM's error ``message`` (from the engine or its server) says the prompt is
    longer than the context."""
    lowered = message.lower()
    return any(marker in lowered for marker in CONTEXT_ERROR_MARKERS)


def classify_engine_error(message: str) -> str:
    """Error kind of an exception vLLM raised for one request."""
    return CONTEXT_LENGTH if is_context_error(message) else INVALID_REQUEST


def parse_request_output(output: Any, num_candidates: int) -> CaptionResult:
    """The candidates in one ``vllm.RequestOutput`` (its ``outputs``: ``text``, ``token_ids``,
    ``finish_reason``), repeated when one greedy sequence stands for several candidates."""
    candidates = [
        Candidate(c.text.strip(), num_tokens=len(c.token_ids),
                  hit_token_limit=c.finish_reason == "length")
        for c in output.outputs
    ]
    if not candidates or num_candidates % len(candidates):
        return CaptionResult.failure(
            INVALID_REQUEST, f"vLLM returned {len(candidates)} of {num_candidates} candidates")
    return CaptionResult.repeated(candidates, num_candidates)
