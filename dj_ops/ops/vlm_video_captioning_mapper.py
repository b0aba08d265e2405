"""``vlm_video_captioning_mapper``: caption videos with a video-native VLM, batched.

The op is glue: it validates parameters, turns a Data-Juicer batch into caption requests, hands
them to one backend call, and writes the results back as new samples. Text layout, candidate
selection, frame sampling and generation settings live in their own modules.
"""

from __future__ import annotations

import functools
import os
import random
from dataclasses import replace
from typing import Literal

from data_juicer.ops.base_op import OPERATORS, Mapper
from data_juicer.utils.constant import Fields
from data_juicer.utils.mm_utils import SpecialTokens, get_special_tokens
from data_juicer.utils.model_utils import get_model
from data_juicer.utils.resource_utils import cuda_device_count, is_cuda_available
from loguru import logger
from pydantic import NonNegativeInt, PositiveFloat, PositiveInt, validate_call

from dj_ops.backends.base import (
    BACKENDS,
    BackendConfig,
    backend_class,
    build_backend,
)
from dj_ops.backends.streaming import DEFAULT_MAX_IN_FLIGHT, is_streaming
from dj_ops.captioning.generation import generation_record, parse_sampling_params
from dj_ops.captioning.records import STATUS_CAPTIONED, STATUS_ERROR, RunInfo
from dj_ops.ops.cpu_threads import generation_threads, intra_op_threads
from dj_ops.ops.export_notice import ExportTarget
from dj_ops.ops.outcome_log import OutcomeLog, log_dataset_outcomes
from dj_ops.ops.pipeline import caption_batch
from dj_ops.ops.sample_builder import SampleBuilder
from dj_ops.ops.streaming import caption_with_engine
from dj_ops.store import ResultKeyer, ResultStore, model_identity
from dj_ops.store.session import StoreSession
from dj_ops.video import FrameSettings
from dj_ops.video.decoders import (
    DEFAULT_DECODER,
    cores_per_process,
    decode_source,
    resolve_decoder,
)

OP_NAME = "vlm_video_captioning_mapper"

DEFAULT_MODEL = "Qwen/Qwen3-VL-8B-Instruct"
DEFAULT_PROMPT = "Describe the input video in 1-2 sentences."
DEFAULT_PREFETCH = 2
ROWS_PER_MICRO_BATCH = 16  # default batch_size, in generation_batch_size units


def _check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {list(allowed)}")


@OPERATORS.register_module(OP_NAME)
class VLMVideoCaptioningMapper(Mapper):
    """Generates video captions with a vision-language model that takes video natively
    (Qwen3-VL by default, Qwen2.5-VL, any Hugging Face video chat model).

    A drop-in superset of Data-Juicer's ``video_captioning_from_vlm_mapper``: the sample text is
    split into chunks by ``SpecialTokens.eoc``; the videos of each chunk (one
    ``SpecialTokens.video`` token each) are captioned; each new sample keeps the special tokens of
    the original with each video's caption right after its token. A sample whose text has no
    video token is captioned as one chunk holding all its videos. Each video of a batch is
    decoded once, in worker processes, while the model captions the previous micro-batch.
    Failures are recorded per sample under ``Fields.meta`` and never cost the rest of the
    batch."""

    _accelerator = "cuda"
    _batched_op = True

    # pydantic checks every typed parameter (PositiveInt, Literal, ...) at construction, also
    # when the op is built from Python rather than from a recipe; the signature and docstring
    # Data-Juicer's config parser reads are kept.
    @validate_call(config={"arbitrary_types_allowed": True})
    def __init__(
        self,
        hf_model: str = DEFAULT_MODEL,
        enable_vllm: bool = False,
        caption_num: PositiveInt = 1,
        keep_candidate_mode: Literal["random_any", "similar_one_simhash", "all"] = "random_any",
        keep_original_sample: bool = True,
        caption_key: str | None = None,
        prompt: str | None = None,
        prompt_key: str | None = None,
        system_prompt: str | None = None,
        model_params: dict | None = None,
        sampling_params: dict | None = None,
        backend: str | None = None,
        generation_batch_size: PositiveInt = 8,
        seed: int | None = None,
        frame_strategy: str = "fps",
        fps: PositiveFloat = 2.0,
        min_frames: PositiveInt = 4,
        max_frames: PositiveInt = 32,
        num_frames: PositiveInt | None = None,
        video_start: float | None = None,
        video_end: float | None = None,
        min_pixels: PositiveInt = 128 * 28 * 28,
        max_pixels: PositiveInt = 448 * 448,
        total_pixels: PositiveInt | None = None,
        on_error: Literal["keep", "drop", "raise"] = "keep",
        decoder: str = DEFAULT_DECODER,
        decode_workers: NonNegativeInt | None = None,
        decode_timeout: PositiveFloat | None = 120.0,
        prefetch: bool | NonNegativeInt = DEFAULT_PREFETCH,
        torch_threads: PositiveInt | None = None,
        result_store: str | None = None,
        result_store_content_hash: bool = False,
        max_in_flight: PositiveInt = DEFAULT_MAX_IN_FLIGHT,
        *args,
        **kwargs,
    ):
        """
        Initialization method.

        :param hf_model: Hugging Face model id or local path of the VLM.
        :param enable_vllm: use the vLLM offline engine (same as ``backend: vllm``).
        :param caption_num: how many candidate captions to generate per video.
        :param keep_candidate_mode: how to reduce the candidates of each video:
            'random_any' keeps a random one, 'similar_one_simhash' keeps the one nearest
            (simhash) to the original chunk text, 'all' keeps every candidate. With N input
            samples the op yields N new samples for 'random_any' and 'similar_one_simhash'
            and N * caption_num for 'all', plus the N originals when keep_original_sample.
        :param keep_original_sample: keep each original sample before its generated ones.
        :param caption_key: caption-field output: instead of adding generated samples, write
            the captions into this field of each sample (row count unchanged, text untouched):
            a list with one caption per video, or for 'all' one list of caption_num candidates
            per video. keep_original_sample does not apply. A sample without videos gets [],
            a failed sample "" per video ([] for 'all') and its error record.
        :param prompt: the prompt for all samples; None uses the default prompt.
        :param prompt_key: the field holding a per-sample prompt; it takes precedence over
            ``prompt``. A sample whose field is missing or not a non-empty string gets an error
            record.
        :param system_prompt: an optional system prompt (None for none; an empty or
            whitespace-only one is refused).
        :param model_params: options for loading the model (e.g. ``dtype``, ``attn_implementation``,
            ``processor_kwargs``); passed to the backend. Each backend declares the keys it
            accepts; an unknown key is refused at construction with the list of valid ones.
        :param sampling_params: generation settings, HF or vLLM names (``max_new_tokens`` or
            ``max_tokens``, ``min_new_tokens``, ``temperature``, ``top_p``, ``top_k``,
            ``do_sample``, ``repetition_penalty``, ``stop``). Greedy by default; with
            caption_num > 1 and no sampling set, candidates are sampled so that they differ.
        :param backend: generation backend by name: 'transformers', 'vllm' (in-process engine)
            or 'openai' (an OpenAI-compatible server, ``model_params.api_base``); None means
            'transformers', or 'vllm' when enable_vllm.
        :param generation_batch_size: videos per generate call (micro-batch) of the
            transformers backend. The vllm and openai backends batch by themselves and get
            each video as soon as it is decoded (see ``max_in_flight``); for them this only
            sizes the decoding window (``prefetch``).
        :param seed: seed for sampling and 'random_any'; fixed seed, reproducible output.
        :param frame_strategy: frame sampling strategy: 'fps' (Qwen-VL style), 'uniform'
            (``num_frames`` evenly spread), or CogVLM2-Llama3-Caption's 'chat' (the frame
            nearest each whole second, at most 24) and 'base' (24 frames over the first 60 s).
        :param fps: frames per second to sample with the 'fps' strategy.
        :param min_frames: fewest frames per video with the 'fps' strategy.
        :param max_frames: most frames per video with the 'fps' strategy.
        :param num_frames: frames per video with the 'uniform' strategy.
        :param video_start: start of the time window to caption, in seconds (None: 0).
        :param video_end: end of the time window to caption, in seconds (None: the end).
        :param min_pixels: fewest pixels per frame after resizing.
        :param max_pixels: most pixels per frame after resizing (aspect ratio kept).
        :param total_pixels: optional pixel budget for all frames of one video.
        :param on_error: what to do with a sample that cannot be captioned (a video that is
            missing, empty, not a video, corrupt, a remote URL, out of memory even alone; an
            invalid per-sample prompt; video tokens that do not match the videos): 'keep' (the
            default, loses nothing) keeps the original row with an error record under the meta
            field (``status: error``, each failed video's ``error_kind`` and
            ``error_message``); 'drop' leaves the row out of the output; 'raise' stops the job
            with the errors. Other samples of the batch are captioned either way, and every
            process logs its counts of captioned and failed rows by error kind.
        :param decoder: video decoder by name: 'pyav' (default), 'torchcodec' or 'decord'
            (extras ``dj-ops[torchcodec]`` / ``dj-ops[decord]``).
        :param decode_workers: decoding processes per op process; None: the cores divided
            among the op's processes; 0: decode in the op's own thread (no prefetch overlap,
            no hard timeout).
        :param decode_timeout: seconds one video may take to decode; past it the decoding
            process is killed and the sample gets a 'timeout' error record. None: no limit.
        :param prefetch: micro-batches of videos decoded ahead while the model captions the
            current one (True: the default, 2; False or 0: none); at most (prefetch + 1) *
            generation_batch_size decoded videos are held in memory. Two ahead absorb the
            uneven decoding times of different videos. Decoding runs ahead within one
            Data-Juicer batch, so the op's default ``batch_size`` is 16 *
            generation_batch_size rows (Data-Juicer's own default is 10 for GPU ops).
        :param torch_threads: torch intra-op threads while the op generates; None: on CPU
            with decoding processes, half the cores of the op process (the decoders use the
            rest), else torch's own setting. Restored after each batch.
        :param result_store: path of a result store (an SQLite file, created if missing): each
            video's candidates are written to it after each micro-batch, keyed by the video,
            the model, the prompts and every frame and generation setting; a video already
            there is neither decoded nor generated again. A killed job re-run with the same
            recipe loses at most the micro-batches in flight. Several op processes on one
            machine may share it; use one file per machine on a cluster. None: no store.
        :param result_store_content_hash: identify videos in the store by a hash of their bytes
            (found again after a move or copy, at the cost of reading each file) instead of
            their path, size and modification time.
        :param max_in_flight: for the backends that batch by themselves (vllm, openai): most
            requests handed to the engine or server at once; decoded videos wait beyond it.
            The default suits a GPU engine's continuous batching; the openai backend also
            keeps at most ``model_params.max_concurrency`` requests on the wire.
        :param args: extra args
        :param kwargs: extra kwargs
        """
        kwargs.setdefault("memory", "20GB" if enable_vllm else "4GB")
        # Rows per batch: enough micro-batches for decoding to run ahead of generation
        # (memory is bounded by generation_batch_size and prefetch, not by this).
        kwargs.setdefault("batch_size", ROWS_PER_MICRO_BATCH * generation_batch_size)
        # Failures are handled per sample (``on_error``). Data-Juicer's skip_op_error would
        # instead drop a whole batch silently on any exception, so it is off for this op: what
        # escapes process_batched (a model that cannot load, on_error='raise') stops the job.
        kwargs["skip_op_error"] = False
        backend = backend or ("vllm" if enable_vllm else "transformers")
        _check_choice("backend", backend, BACKENDS)
        if backend_class(backend).single_process:
            # An in-process engine (vLLM) takes the GPUs it is given; several GPUs serve one
            # engine through model_params.tensor_parallel_size, not through worker processes.
            if (kwargs.get("num_proc") or 1) > 1:
                logger.info(f"backend {backend!r} runs in one worker process (num_proc 1)")
            kwargs["num_proc"] = 1
        elif is_cuda_available():  # one model replica per GPU (Ray actors, default-executor procs)
            kwargs.setdefault("num_gpus", 1)
        super().__init__(*args, **kwargs)
        if caption_key is not None and caption_key in ("", self.text_key, self.video_key,
                                                      Fields.meta):
            raise ValueError(f"caption_key={caption_key!r} must name a new field, not empty nor "
                             "the text, videos or meta field")
        if prompt is not None and not prompt.strip():
            raise ValueError("prompt is empty; give a prompt or leave it unset for the default")
        if system_prompt is not None and not system_prompt.strip():
            raise ValueError("system_prompt is empty; give a system prompt or leave it unset")
        if prompt and prompt_key:
            logger.warning("Both `prompt` and `prompt_key` are set; `prompt_key` takes precedence.")

        self.caption_num = caption_num
        self.keep_candidate_mode = keep_candidate_mode
        self.keep_original_sample = keep_original_sample
        self.caption_key = caption_key
        self.prompt = prompt or DEFAULT_PROMPT
        self.prompt_key = prompt_key
        self.system_prompt = system_prompt
        self.on_error = on_error
        self.seed = seed
        self.settings = parse_sampling_params(sampling_params, caption_num)
        self.frame_settings = FrameSettings(
            strategy=frame_strategy, fps=fps, min_frames=min_frames, max_frames=max_frames,
            num_frames=num_frames, video_start=video_start, video_end=video_end,
            min_pixels=min_pixels, max_pixels=max_pixels, total_pixels=total_pixels,
        )
        self.backend_name = backend
        resolve_decoder(decoder)  # unknown name or missing package: fail here, not in a worker
        self.decoder = decoder
        self.decode_workers = decode_workers
        self._workers: int | None = None  # decode_workers, resolved in each worker process
        self.decode_timeout = decode_timeout
        self.prefetch = DEFAULT_PREFETCH if prefetch is True else int(prefetch)
        self.generation_batch_size = generation_batch_size
        self.torch_threads = torch_threads
        self.max_in_flight = max_in_flight
        self._threads: int | None = None  # resolved with _workers, in each worker process
        self.run_info = RunInfo(hf_model, backend, generation_record(self.settings, seed),
                                keep_candidate_mode)
        config = BackendConfig(
            model=hf_model, settings=self.settings, num_candidates=caption_num,
            batch_size=generation_batch_size, seed=seed, model_params=dict(model_params or {}),
            frame_settings=self.frame_settings,
        )
        backend_class(backend).check_config(config)
        # Data-Juicer's model zoo loads this once per worker, on the worker's device.
        self.backend_config = config
        self.model_key = functools.partial(build_backend, backend, config)
        self._rng = random.Random(seed)
        self.result_store = result_store
        self.result_store_content_hash = result_store_content_hash
        if result_store:  # a store of another format fails here, not in a worker
            ResultStore(result_store).close()
        self._store: tuple[int, StoreSession] | None = None  # (pid, session), per process
        # Per-process counts: built in the process that runs the batches, never pickled
        # with the op (dill would serialise its logging machinery along with it).
        self._outcome_log: OutcomeLog | None = None

    @property
    def outcome_log(self) -> OutcomeLog:
        """This process's counts of captioned and failed rows (created on first use)."""
        if self._outcome_log is None:
            self._outcome_log = OutcomeLog(OP_NAME)
        return self._outcome_log

    def run(self, dataset, *, exporter=None, tracer=None):
        """Data-Juicer's run, then one INFO line counting the outcomes over the whole output
        and one saying where the output and the records go (a warning, also before the run,
        when the export will not hold the records)."""
        target = ExportTarget.of(exporter)
        if target and target.records_elsewhere():
            logger.warning(f"{OP_NAME}: {target.records_elsewhere()}")
        dataset = super().run(dataset, exporter=exporter, tracer=tracer)
        dropped = self.on_error == "drop"
        note = " (failed rows were dropped: see the workers' counts)" if dropped else ""
        outcomes = log_dataset_outcomes(OP_NAME, dataset, Fields.meta, note)
        if target:
            failed = outcomes.by_status[STATUS_ERROR]
            line = f"{OP_NAME}: {target.summary(outcomes.by_status[STATUS_CAPTIONED], failed)}"
            (logger.warning if failed and not target.keeps_meta else logger.info)(line)
        return dataset

    def _op_processes(self) -> int:
        """How many processes run this op on this machine (their decoders share its cores).

        Under Ray, ``num_proc`` is None and Data-Juicer's ``runtime_np()`` fails on it; each
        Ray actor holds one GPU (``num_gpus: 1``), so a node runs one actor per GPU.
        """
        if self.num_proc is None:
            return max(1, cuda_device_count())
        return self.runtime_np()

    def _store_session(self, backend, settings: FrameSettings) -> StoreSession | None:
        """This process's view of the result store (opened on its first batch; a connection
        never crosses a fork), or None without a store."""
        if not self.result_store:
            return None
        if self._store is None or self._store[0] != os.getpid():
            config = self.backend_config
            keyer = ResultKeyer(
                model=model_identity(config.model, config.model_params.get("revision")),
                run={"backend": self.backend_name, "system_prompt": self.system_prompt,
                     "frames": settings, "generation": backend.generation_record(),
                     "caption_num": self.caption_num, "model_params": config.model_params,
                     "output": {"format": "text"}},
                content_hash=self.result_store_content_hash)
            self._store = (os.getpid(), StoreSession(ResultStore(self.result_store), keyer))
        return self._store[1]

    def process_batched(self, samples: dict[str, list], rank: int | None = None):
        backend = get_model(self.model_key, rank, self.use_cuda())
        builder = SampleBuilder(
            samples, text_key=self.text_key, video_key=self.video_key, meta_key=Fields.meta,
            video_token=SpecialTokens.video, eoc_token=SpecialTokens.eoc,
            special_tokens=list(get_special_tokens().values()), prompt_key=self.prompt_key,
            default_prompt=self.prompt,
        )
        factor = getattr(backend, "size_factor", None)
        settings = self.frame_settings
        if factor:  # the model's patch factor (28 for Qwen2.5-VL, 32 for Qwen3-VL)
            settings = replace(settings, size_factor=factor)
        if self._workers is None:  # once per process: runtime_np() may query the GPUs
            cores = cores_per_process(self._op_processes())
            # by default one decoding process per core of this op process
            self._workers = cores if self.decode_workers is None else self.decode_workers
            self._threads = generation_threads(cores, self._workers, on_gpu=self.use_cuda(),
                                               requested=self.torch_threads)
        source = decode_source(self.decoder, self._workers, self.decode_timeout)
        with intra_op_threads(self._threads):
            store = self._store_session(backend, settings)
            if is_streaming(backend):  # the engine batches by itself: feed it continuously
                caption_with_engine(
                    builder, backend, source, settings, max_in_flight=self.max_in_flight,
                    max_decoded=(self.prefetch + 1) * self.generation_batch_size,
                    system_prompt=self.system_prompt, store=store,
                )
            else:
                caption_batch(
                    builder, backend, source, settings, batch_size=self.generation_batch_size,
                    prefetch=self.prefetch, system_prompt=self.system_prompt, store=store,
                )
        # what generation actually runs with, as the loaded backend resolved it
        run = replace(self.run_info, generation=backend.generation_record())
        output = builder.build(
            run=run, mode=self.keep_candidate_mode,
            keep_original=self.keep_original_sample, on_error=self.on_error, rng=self._rng,
            caption_key=self.caption_key,
        )
        self.outcome_log.add_batch(builder.records)
        return output
