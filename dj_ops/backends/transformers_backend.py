"""Hugging Face transformers backend: batched, left-padded ``generate`` on CPU or GPU.

All requests of an op batch are cut into micro-batches (most expensive first; one frame count
per micro-batch for a family whose processor stacks videos, one video per micro-batch for a
family not in the table: the adapter's ``needs``, learned from its processor); in each, every
video is preprocessed and prefilled alone, once (``prefill``), then one ``generate`` call decodes
the ``num_candidates`` candidates of every video at once. A micro-batch that raises is retried
in halves (out of memory) or video by video, down to a per-video error record
(:mod:`dj_ops.backends.isolation`).
"""

from __future__ import annotations

import torch
import transformers
from loguru import logger

from dj_ops.adapters import resolve_adapter
from dj_ops.adapters.generic import note_untested
from dj_ops.adapters.needs import ONE_PER_CALL
from dj_ops.adapters.registry import ADAPTER_PARAM_KEYS, read_model_identity
from dj_ops.backends.base import (
    PROCESSOR_KWARGS_KEY,
    BackendConfig,
    Candidate,
    CaptionBackend,
    CaptionRequest,
    CaptionResult,
    request_config,
)
from dj_ops.backends.fast_decoding import (
    GENERATE,
    FastDecoding,
    fast_decoding_blockers,
    plain_generate,
)
from dj_ops.backends.grammar import compile_json_schema, json_logits_processors
from dj_ops.backends.hf_inputs import hf_inputs_for
from dj_ops.backends.isolation import INPUTS, OUTPUT, at_stage, run_isolated, staged
from dj_ops.backends.memory import free_memory
from dj_ops.backends.model_source import check_model_source
from dj_ops.backends.quantization import (
    QUANTIZATION_KEY,
    check_hf_quantization,
    hf_quantization_kwargs,
)
from dj_ops.captioning.batching import run_in_micro_batches
from dj_ops.captioning.generation import (
    SAMPLING_KNOBS,
    generation_record,
    to_hf_generate_kwargs,
)

# ``from_pretrained`` options accepted in model_params (anything else is a typo or unsupported).
FROM_PRETRAINED_KEYS = frozenset({
    "attn_implementation", "cache_dir", "device_map", "dtype", "local_files_only",
    "low_cpu_mem_usage", "max_memory", "offload_folder", "quantization_config", "revision",
    "subfolder", "torch_dtype", "trust_remote_code", "use_safetensors", "variant",
})


# Candidate.decoding of a structured caption: plain generate under the schema's grammar.
JSON_SCHEMA_DECODING = "generate_json_schema"


def pick_dtype(device: str) -> torch.dtype:
    """bf16 on GPUs of compute capability >= 8, fp16 on older GPUs, fp32 on CPU."""
    if not device.startswith("cuda") or not torch.cuda.is_available():
        return torch.float32
    major, _ = torch.cuda.get_device_capability(torch.device(device))
    return torch.bfloat16 if major >= 8 else torch.float16


class TransformersBackend(CaptionBackend):
    """Captions with the model's own processor and ``transformers`` class (both chosen by the
    family's adapter: ``AutoProcessor`` and ``AutoModelForImageTextToText`` by default)."""

    name = "transformers"
    model_param_keys = FROM_PRETRAINED_KEYS | ADAPTER_PARAM_KEYS | {
        PROCESSOR_KWARGS_KEY, QUANTIZATION_KEY}

    def __init__(self, config: BackendConfig, device: str = "cpu"):
        super().__init__(config, device)
        # The model family's builder makes inputs; model_params keys its adapter reads stay out of
        # from_pretrained, as do processor options and the quantization mode.
        self.adapter = resolve_adapter(config.model, config.params)
        self.inputs = hf_inputs_for(self.adapter)
        quantization, params = config.params.quantization, config.params.loader
        if "torch_dtype" in params:  # the old spelling, else ignored beside our default dtype
            params.setdefault("dtype", params.pop("torch_dtype"))
        params.setdefault("dtype", pick_dtype(device))
        params.update(hf_quantization_kwargs(quantization, params["dtype"], device))
        remote = {"trust_remote_code": params.get("trust_remote_code", False)}
        self.processor = self.inputs.load_processor(config.model, **remote)
        self.tokenizer = self.inputs.tokenizer(self.processor)
        # What one generate call needs from its videos, from the family's processor; a family
        # not in the table keeps the safe path (one video per call, its processor resizes).
        self.needs = self.adapter.learn(self.processor)
        self._hinted = False  # the hint on frame counts that cut micro-batches, logged once
        note_untested(self.adapter, config.model, read_model_identity(config.model, True))
        self.videos_kwargs = {**self.adapter.processor_kwargs(), **config.params.processor_kwargs}
        model_class = getattr(transformers, self.adapter.model_class)
        self.model = model_class.from_pretrained(config.model, **params)
        if quantization is None:  # a quantized model is placed by device_map and cannot move
            self.model.to(device)
        self.model.eval()
        self.generate_kwargs = self._generate_kwargs(config.settings)
        self.eos_ids = self._eos_ids()
        # The adapter may set the family's pad token (CogVLM2's); else the tokenizer's.
        self.pad_token_id = self.generate_kwargs.get("pad_token_id", self.tokenizer.pad_token_id)
        self.size_factor = self.inputs.size_factor(self.processor)
        limit = 1 if self.needs.batching == ONE_PER_CALL else self.adapter.max_batch_size
        self.batch_size = min(config.batch_size, limit or config.batch_size)
        # caption_format json: the schema compiled once for this tokenizer; each generate call
        # gets fresh grammar processors (one matcher per row).
        self.grammar = None if config.json_schema is None else compile_json_schema(
            self.tokenizer, self.model.config.get_text_config().vocab_size, config.json_schema,
            sorted(self.eos_ids))
        # The speed-ups run where they were checked, and are checked again on the first
        # micro-batch (fast_decoding.py).
        blockers = fast_decoding_blockers(
            self.model, mode=config.fast_decoding,
            checked_model_types=self.adapter.fast_decoding_checked,
            attn_implementation=config.model_params.get("attn_implementation"),
            generate_kwargs=self.generate_kwargs)
        if self.grammar is not None:  # its check compares greedy paths, not grammar states
            blockers.append("caption_format json decodes through plain generate with a "
                            "grammar processor")
        self.fast = FastDecoding(self.model, blockers)

    @property
    def separate_prefill(self) -> bool:
        """Whether micro-batches are prefilled prompt by prompt, then decoded together with
        shared-prefix attention (see prefill.py), rather than by plain ``generate``."""
        return self.fast.enabled

    @classmethod
    def check_config(cls, config: BackendConfig) -> None:
        super().check_config(config)
        check_model_source(config.model)
        remote = bool(config.model_params.get("trust_remote_code", False))
        try:
            transformers.AutoConfig.from_pretrained(config.model, trust_remote_code=remote)
        except (OSError, ValueError) as error:
            raise ValueError(
                f"hf_model={config.model!r} cannot be loaded: {error}. Give a local checkpoint "
                "folder or a Hugging Face model id (downloaded or reachable)."
            ) from None  # the message holds the cause; its traceback chain only hides it
        resolve_adapter(config.model, config.params).check(config.model_params)
        check_hf_quantization(config.params.quantization,
                              torch.cuda.is_available())

    def generation_record(self) -> dict:
        """The settings, with the values ``generate`` takes from the model's own
        ``generation_config`` (then transformers' defaults) where the settings leave them
        open: ``top_k`` when sampling, ``repetition_penalty``."""
        model_defaults = self.model.generation_config
        # generate fills what the model leaves unset from transformers' global defaults
        # (top_k 50, ...); a private helper, read only for this record, so it may go missing.
        global_defaults = getattr(type(model_defaults), "_get_default_generation_params", dict)()
        applied = {}
        for knob in (*SAMPLING_KNOBS, "repetition_penalty"):
            value = self.generate_kwargs.get(knob, getattr(model_defaults, knob, None))
            applied[knob] = global_defaults.get(knob) if value is None else value
        return generation_record(self.config.settings, self.config.seed, applied)

    def _generate_kwargs(self, settings) -> dict:
        """``generate``'s keyword arguments for ``settings``."""
        kwargs = to_hf_generate_kwargs(settings, self.config.num_candidates)
        if self.adapter.pad_token_id is not None:  # the family's own (CogVLM2's card: 128002)
            kwargs["pad_token_id"] = self.adapter.pad_token_id
        if "stop_strings" in kwargs:
            kwargs["tokenizer"] = self.tokenizer
        return kwargs

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        if self.tokenizer.eos_token_id is not None:
            eos.append(self.tokenizer.eos_token_id)
        return set(eos)

    def to(self, device: str) -> TransformersBackend:
        """Move the model (Data-Juicer's ``free_models`` calls this)."""
        if not getattr(self.model, "is_quantized", False):
            self.model.to(device)
        return self

    def generate(self, requests: list[CaptionRequest]) -> list[CaptionResult]:
        # One generate call runs one set of settings: requests with their own (a quality-gate
        # retry's) are micro-batched apart from the others.
        results: list[CaptionResult | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault((request.settings, request.attempt), []).append(index)
        for indices in groups.values():
            alike = [requests[i] for i in indices]
            keys = [None if r.frames is None else self.needs.batch_key(r.frames.shape)
                    for r in alike]
            self._hint_common_count(len(alike), len(set(keys)))
            done = run_in_micro_batches(alike, [r.cost for r in alike], self.batch_size,
                                        self._generate_isolated, keys)
            for index, result in zip(indices, done, strict=True):
                results[index] = result
        return results  # type: ignore[return-value]

    def _hint_common_count(self, requests: int, keys: int) -> None:
        """Say once when frame counts cut micro-batches: the fix keeps every video's count."""
        if self._hinted or keys <= -(-requests // self.batch_size):
            return
        self._hinted = True
        logger.info(f"{self.adapter.name} stacks the videos of a generate call, so they must "
                    f"share a frame count: {requests} videos with {keys} frame counts take at "
                    f"least {keys} calls. `frame_strategy: uniform` with `num_frames` gives "
                    "every video one count, keeping micro-batches whole (the family's own "
                    "practice)")

    def _generate_isolated(self, requests: list[CaptionRequest]) -> list[CaptionResult]:
        """One micro-batch; if it raises, its halves (out of memory) or its requests one by
        one, down to a per-request error record."""
        return run_isolated(requests, self.run_micro_batch, lambda *_: free_memory())

    def encode(self, requests: list[CaptionRequest]):
        """Model inputs for one micro-batch (left padded), built by the family's builder."""
        return self.inputs.encode(self.processor, self.model, requests, self.videos_kwargs)

    @torch.inference_mode()
    def run_micro_batch(self, requests: list[CaptionRequest]) -> list[CaptionResult]:
        """One try at one micro-batch: raises whatever fails (``generate`` isolates it), each
        exception tagged with its stage (inputs, model, output)."""
        config = request_config(self.config, requests[0])  # alike in a micro-batch
        if config.seed is not None:
            torch.manual_seed(config.seed)
        retry = config is not self.config
        kwargs = self._generate_kwargs(config.settings) if retry else self.generate_kwargs
        k = kwargs["num_return_sequences"]
        if self.grammar is not None:  # a fresh grammar state per call
            kwargs = {**kwargs, "logits_processor": json_logits_processors(self.grammar)}
        encode = staged(INPUTS, self.encode)
        if k > 1 and not self.adapter.samples_in_generate:  # each prompt repeated k times
            rows = [request for request in requests for _ in range(k)]
            kwargs = {**kwargs, "num_return_sequences": 1}
            new_tokens, path = plain_generate(self.model, encode(rows), kwargs), GENERATE
        elif retry:  # a retry's sampling: its repetition penalty reads the prompt's tokens,
            # which the fast path does not pass to generate, so plain generate runs it
            new_tokens, path = plain_generate(self.model, encode(requests), kwargs), GENERATE
        else:
            new_tokens, path = self.fast.generate(requests, encode, kwargs, k)
        if self.grammar is not None:
            path = JSON_SCHEMA_DECODING
        with at_stage(OUTPUT):
            return [
                CaptionResult.repeated(
                    [self._candidate(row, path, kwargs["max_new_tokens"])
                     for row in new_tokens[i * k:(i + 1) * k]],
                    self.config.num_candidates)
                for i in range(len(requests))
            ]

    def _candidate(self, token_ids: torch.Tensor, path: str, max_tokens: int) -> Candidate:
        ids = token_ids.tolist()
        pad = self.pad_token_id
        while ids and ids[-1] == pad and pad not in self.eos_ids:
            ids.pop()
        ended = any(t in self.eos_ids for t in ids)
        if ended:
            ids = ids[: next(i for i, t in enumerate(ids) if t in self.eos_ids)]
        text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
        hit_limit = not ended and len(ids) >= max_tokens
        return Candidate(text, num_tokens=len(ids), hit_token_limit=hit_limit, decoding=path,
                         batching=self.needs.batching)
