"""vLLM backend: the whole batch in one ``LLM.generate`` call, ``SamplingParams(n=caption_num)``.

The engine is built once per worker (the op loads backends through Data-Juicer's model zoo) and
takes the GPUs it is given, so the op runs it in one worker process; several GPUs serve one engine
through ``model_params.tensor_parallel_size``. Videos go in as already-sampled frames with their
metadata (see :mod:`dj_ops.backends.vllm_requests` and the family adapters). A request that
cannot fit the model's context fails alone, with a ``context_length`` record.
"""

from __future__ import annotations

import functools

import vllm

from dj_ops.adapters import resolve_adapter
from dj_ops.backends.base import BackendConfig, CaptionBackend, CaptionRequest, CaptionResult
from dj_ops.backends.vllm_requests import (
    build_request,
    check_context,
    check_vllm_config,
    classify_engine_error,
    engine_kwargs,
    parse_request_output,
    sampling_kwargs,
)


def engine_max_model_len(llm) -> int:
    """The context length the engine was built with."""
    engine = llm.llm_engine
    model_config = getattr(engine, "model_config", None) or engine.vllm_config.model_config
    return int(model_config.max_model_len)


class VLLMBackend(CaptionBackend):
    """Captions with an in-process ``vllm.LLM`` engine."""

    name = "vllm"
    single_process = True
    model_param_keys = None  # every key but the adapter's is a vLLM engine argument

    def __init__(self, config: BackendConfig, device: str = "cpu"):
        super().__init__(config, device)
        self.adapter = resolve_adapter(config.model, config.params)
        self.llm = vllm.LLM(**engine_kwargs(config, self.adapter))
        self.sampling_params = vllm.SamplingParams(**sampling_kwargs(config))
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = engine_max_model_len(self.llm)
        self.size_factor = self.adapter.size_factor

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

    def _render(self, messages: list[dict]) -> str:
        return self._processor.apply_chat_template(messages, tokenize=False,
                                                   add_generation_prompt=True)

    def generate(self, requests: list[CaptionRequest]) -> list[CaptionResult]:
        prompts = [build_request(self.adapter, r, self._render) for r in requests]
        results: list[CaptionResult | None] = [
            check_context(self.adapter, r, len(self.tokenizer.encode(p["prompt"])),
                          self.max_model_len)
            for r, p in zip(requests, prompts)
        ]
        todo = [i for i, result in enumerate(results) if result is None]
        for i, result in zip(todo, self._run([prompts[i] for i in todo])):
            results[i] = result
        return results  # type: ignore[return-value]

    def _run(self, prompts: list[dict]) -> list[CaptionResult]:
        """Generate ``prompts`` in one call; when vLLM refuses one of them (it then runs none),
        retry them one by one so that only the refused ones fail."""
        if not prompts:
            return []
        try:
            outputs = self.llm.generate(prompts, self.sampling_params, use_tqdm=False)
        except ValueError as error:
            if len(prompts) == 1:
                return [CaptionResult.failure(classify_engine_error(str(error)), str(error))]
            return [result for prompt in prompts for result in self._run([prompt])]
        return [parse_request_output(o, self.config.num_candidates) for o in outputs]
