"""``caption_enhancement_mapper``: a text model rewrites the captions the captioning op wrote.

NeMo Curator's caption pipeline ends with an optional ``CaptionEnhancementStage`` and
cosmos-curate has the same step: a language model rewrites each VLM caption, as text generators
are trained on richer or differently styled prompts. Chained after
``vlm_video_captioning_mapper`` in a recipe, this op reads the captions it wrote, rewrites each
with a preset's instruction (or the recipe's own prompt), and writes the rewrite beside the
original (never over it) with a record of what made it. The op is glue: its parameters are
parsed once into an :class:`~dj_ops.ops.enhancement_config.EnhanceConfig`; in each process an
:class:`~dj_ops.ops.enhancer.Enhancer` owns the backend and the result store.
"""

from __future__ import annotations

import functools
from typing import Literal

from data_juicer.ops.base_op import OPERATORS, Mapper
from data_juicer.utils.constant import Fields
from loguru import logger
from pydantic import NonNegativeInt, PositiveInt, validate_call

from dj_ops.backends.base import build_backend
from dj_ops.captioning.parameters import DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_RETRIES, DEFAULT_MODEL
from dj_ops.enhancement.presets import DEFAULT_PRESET, resolve_rewrite
from dj_ops.enhancement.records import ENHANCEMENT_KEY, EnhanceSummary
from dj_ops.enhancement.sources import SourceLayout
from dj_ops.ops.captioner import ProcessPlacement
from dj_ops.ops.config import data_juicer_resources, resolve_backend
from dj_ops.ops.enhancement_config import parse_enhance_config
from dj_ops.ops.enhancement_rows import enhance_rows
from dj_ops.ops.enhancer import Enhancer
from dj_ops.ops.export_notice import ExportTarget
from dj_ops.ops.outcome_log import warn_records_elsewhere
from dj_ops.ops.quality_gate import GateConfig, parse_thresholds
from dj_ops.ops.structured_config import parse_structured
from dj_ops.ops.vlm_video_captioning_mapper import VLMVideoCaptioningMapper
from dj_ops.runtime.lifetime import children_end_with_this_process, guard_op_process

OP_NAME = "caption_enhancement_mapper"


@OPERATORS.register_module(OP_NAME)
class CaptionEnhancementMapper(Mapper):
    """Rewrites the captions of ``vlm_video_captioning_mapper`` with a text model (a preset's
    style: a richer paragraph, a short sentence, a text-to-video prompt bounded in the
    generator's text-encoder tokens; or the recipe's own instruction), keeping the original.

    The captions are read where the captioning op wrote them (the text after each video token
    of its generated samples, or its ``caption_key`` field; window captions from its record);
    each is one text-only request (the instruction as the system message, the caption as the
    user message) on the same backends as the captioning op. The rewrite goes into a field
    beside the caption (``enhanced_key``), and the record under ``Fields.meta``
    (``caption_enhancement``, beside the captioning op's) says which model, preset, prompt
    and settings made it. Rows the captioning op did not caption pass through unchanged."""

    _accelerator = "cuda"
    _batched_op = True
    _NON_FINGERPRINT_ATTRS = Mapper._NON_FINGERPRINT_ATTRS | {"_enhancer"}

    @validate_call(config={"arbitrary_types_allowed": True})
    def __init__(
        self,
        hf_model: str = DEFAULT_MODEL,
        preset: str = DEFAULT_PRESET,
        prompt: str | None = None,
        caption_key: str | None = None,
        enhanced_key: str | None = None,
        windows: bool = False,
        target_tokenizer: str | None = None,
        max_target_tokens: PositiveInt | None = None,
        backend: str | None = None,
        enable_vllm: bool = False,
        model_params: dict | None = None,
        sampling_params: dict | None = None,
        generation_batch_size: PositiveInt = 8,
        max_in_flight: PositiveInt = DEFAULT_MAX_IN_FLIGHT,
        seed: int | None = None,
        on_error: Literal["keep", "drop", "raise"] = "keep",
        result_store: str | None = None,
        max_retries: NonNegativeInt = DEFAULT_MAX_RETRIES,
        on_low_quality: Literal["keep", "error"] = "keep",
        quality_thresholds: dict | None = None,
        caption_format: Literal["text", "json"] = "text",
        json_schema: dict | str | None = None,
        caption_lengths: dict | None = None,
        *args,
        **kwargs,
    ):
        """
        Initialization method.

        :param hf_model: the text model: a Hugging Face id or local folder of a text-only
            causal LM (Qwen3, Llama, ...) or of the captioning VLM itself (given text only).
            With ``backend: openai``, the served model's name.
        :param preset: the rewrite style: 'detailed' (a richer, more detailed paragraph),
            'short' (one sentence of at most 25 words) or 'video_generation' (a text-to-video
            prompt bounded by default to 226 tokens of T5, CogVideoX's text encoder); see the
            README for each preset's instruction.
        :param prompt: your own instruction (the system message), replacing the preset's; the
            preset's token limit and bound still apply. ``{max_words}`` in it becomes the word
            budget of the bound.
        :param caption_key: the captioning op's ``caption_key`` (its caption field); None: the
            captions are the text after each video token of its generated samples.
        :param enhanced_key: the field the rewrites go into (never the text: its special tokens
            stay as they are; never the caption: the original is kept). None:
            ``<caption_key>_enhanced``, or ``caption_enhanced`` for generated samples. It has
            the caption field's shape: per video one rewrite, or one list per video when the
            field holds every candidate (``keep_candidate_mode: all``).
        :param windows: also rewrite each window caption of long videos (the captioning op's
            ``window_seconds``), into ``<enhanced_key>_windows`` (per video, one rewrite per
            window). The merged caption is the video's caption: it is always rewritten.
        :param target_tokenizer: the tokenizer the length bound counts in (the generator's text
            encoder's; a Hugging Face id or local folder, loaded at construction); the
            'video_generation' preset's default is ``google/t5-v1_1-xxl``.
        :param max_target_tokens: the length bound in target tokens, special tokens included
            (the encoder's input length: 226 for CogVideoX). A longer rewrite is cut at a token
            boundary, preferably at a sentence or word end; the record says so (``cut``) and
            gives its count (``target_tokens``). Never exceeded.
        :param backend: 'transformers', 'vllm' (in-process engine) or 'openai' (an
            OpenAI-compatible server, ``model_params.api_base``); None: 'transformers', or
            'vllm' when enable_vllm.
        :param enable_vllm: use the vLLM engine (same as ``backend: vllm``).
        :param model_params: model loading options, vLLM engine arguments, or the openai
            backend's server settings, as for ``vlm_video_captioning_mapper``.
        :param sampling_params: generation settings (HF or vLLM names); greedy by default, and
            the preset's token limit (512, 64, 320) unless ``max_new_tokens`` is set.
        :param generation_batch_size: captions per ``generate`` call of the transformers
            backend (and per write to the result store); the vllm and openai backends are fed
            continuously (``max_in_flight``).
        :param max_in_flight: vllm and openai: most requests in the engine or server at once.
        :param seed: fixes sampling: reproducible rewrites.
        :param on_error: a row whose rewrites fail (the engine or server refused one, an empty
            rewrite, a low-quality one with ``on_low_quality: error``, its captions not where
            ``caption_key`` says): 'keep' it with its original caption, the rewrites that were
            made, and an error record; 'drop' it; 'raise' stops the job.
        :param result_store: path of a result store (SQLite file; it may be the captioning
            op's): rewrites already in it, of the same caption by the same model, instruction
            and settings, are reused, new ones written after each micro-batch; a killed run
            resumes.
        :param max_retries: the quality gate's retries per rewrite, as in the captioning op
            (empty, repetition, truncated, refusal, garbage; retried with the retry sampling).
        :param on_low_quality: a rewrite still failing after the retries is kept with its
            flags ('keep') or becomes a ``low_quality`` error ('error').
        :param quality_thresholds: the gate's thresholds, as in the captioning op.
        :param caption_format: 'text', or 'json': the rewrite is a JSON document under
            ``json_schema``, decoded under it by constrained decoding on every backend; the
            field gets its rendering at the first of ``caption_lengths`` and the record its
            document (``caption_json``) and renderings (also in ``<enhanced_key>_lengths``).
        :param json_schema: json mode's schema (a dict, a .json path, or None for the default
            video-caption schema).
        :param caption_lengths: json mode's named word budgets of the renderings.
        :param args: extra args
        :param kwargs: extra kwargs
        """
        backend = resolve_backend(backend, enable_vllm)
        kwargs = data_juicer_resources(backend, generation_batch_size, kwargs)
        super().__init__(*args, **kwargs)
        children_end_with_this_process()  # the workers Data-Juicer forks end with this process
        structured = parse_structured(caption_format, json_schema, caption_lengths)
        self.config = parse_enhance_config(
            backend=backend, model=hf_model,
            rewrite=resolve_rewrite(preset, prompt, max_target_tokens, target_tokenizer),
            layout=SourceLayout(text_key=self.text_key, video_key=self.video_key,
                                meta_key=Fields.meta, caption_key=caption_key,
                                enhanced_key=enhanced_key, windows=windows),
            model_params=model_params, sampling_params=sampling_params,
            generation_batch_size=generation_batch_size, seed=seed, on_error=on_error,
            store_path=result_store,
            quality=GateConfig(max_retries=max_retries, on_low_quality=on_low_quality,
                               thresholds=parse_thresholds(quality_thresholds)),
            structured=structured, max_in_flight=max_in_flight)
        # what builds this op's backend on a device (the enhancer of each process owns it)
        self.model_key = functools.partial(build_backend, backend, self.config.model)
        self._enhancer: Enhancer | None = None

    def __getstate__(self) -> dict:
        """A copy sent to another process starts without this process's enhancer."""
        return {**self.__dict__, "_enhancer": None}

    # processes running this op on this machine: the captioning op's rule (under Ray
    # ``num_proc`` is None: one actor per GPU)
    _op_processes = VLMVideoCaptioningMapper._op_processes

    def process_batched(self, samples: dict[str, list], rank: int | None = None):
        if self._enhancer is None:
            self._enhancer = Enhancer(self.config, self.model_key)
        if not self._enhancer.ready:
            guard_op_process()  # a worker of the job: ends with it, stops cleanly on SIGTERM
            self._enhancer.setup(ProcessPlacement(rank, self.use_cuda(), self._op_processes()))
        output, records = enhance_rows(samples, self.config, self._enhancer)
        # per batch: where rows dropped by on_error 'drop' are counted
        logger.debug(f"{OP_NAME} batch: {EnhanceSummary().add(records).format()}")
        return output

    def run(self, dataset, *, exporter=None, tracer=None):
        """Data-Juicer's run, then one INFO line counting the outcomes over the whole output."""
        target = ExportTarget.of(exporter)
        warn_records_elsewhere(OP_NAME, target)
        dataset = super().run(dataset, exporter=exporter, tracer=tracer)
        self.close()
        logger.info(f"{OP_NAME} output: {summarize_output(dataset).format()}")
        return dataset

    def close(self) -> None:
        """Close this process's store and backend (a later batch sets them up again)."""
        if self._enhancer is not None:
            self._enhancer.close()


def summarize_output(dataset) -> EnhanceSummary:
    """The op's counts over an output dataset (every worker's rows; dropped rows are not in
    it)."""
    if Fields.meta not in dataset.column_names:
        return EnhanceSummary()
    metas = dataset.select_columns([Fields.meta])[Fields.meta]
    return EnhanceSummary().add((meta or {}).get(ENHANCEMENT_KEY) for meta in metas)
