"""``vlm_video_captioning_mapper``: caption videos with a video-native VLM, batched.

The op is glue: its parameters are parsed once into a :class:`~dj_ops.ops.config.CaptionConfig`
at construction; in each process that runs batches a :class:`~dj_ops.ops.captioner.Captioner`
sets up the backend and the decoding processes once and captions every batch.
"""

from __future__ import annotations

import time

from data_juicer.ops.base_op import OPERATORS, Mapper
from data_juicer.utils.constant import Fields
from data_juicer.utils.mm_utils import SpecialTokens, get_special_tokens
from data_juicer.utils.resource_utils import cuda_device_count
from loguru import logger
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, validate_call

from dj_ops.captioning.parameters import (
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MODEL,
    DEFAULT_PREFETCH,
    FRAMES,
    CaptionFormat,
    FastDecoding,
    KeepMode,
    OnError,
    OnLowQuality,
)
from dj_ops.cluster import spread
from dj_ops.cluster.per_process import BackendLoader, shared_captioner
from dj_ops.ops.captioner import Captioner, ProcessPlacement
from dj_ops.ops.config import (
    DecodingConfig,
    OutputPolicy,
    StoreConfig,
    TextLayout,
    data_juicer_resources,
    parse_config,
    resolve_backend,
)
from dj_ops.ops.export_notice import ExportTarget
from dj_ops.ops.outcome_log import OutcomeLog, log_run_outcomes, warn_records_elsewhere
from dj_ops.ops.quality_gate import GateConfig, parse_thresholds
from dj_ops.ops.structured_config import parse_structured
from dj_ops.ops.window_config import WindowConfig
from dj_ops.report import op_report
from dj_ops.report.entries import TextLayout as ReportLayout
from dj_ops.runtime.lifetime import children_end_with_this_process
from dj_ops.runtime.op_run import OpRun
from dj_ops.video import FrameSettings
from dj_ops.video.decoders import DEFAULT_DECODER
from dj_ops.video.thumbnails import ThumbnailSettings

OP_NAME = "vlm_video_captioning_mapper"


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
    # The per-process captioner (models, processes) is neither hashed nor sent to workers.
    _NON_FINGERPRINT_ATTRS = Mapper._NON_FINGERPRINT_ATTRS | {"_captioner", "_progress_board"}

    # pydantic checks every typed parameter (PositiveInt, Literal, ...) at construction, also
    # when the op is built from Python rather than from a recipe; the signature and docstring
    # Data-Juicer's config parser reads are kept.
    @validate_call(config={"arbitrary_types_allowed": True})
    def __init__(
        self,
        hf_model: str = DEFAULT_MODEL,
        enable_vllm: bool = False,
        caption_num: PositiveInt = 1,
        keep_candidate_mode: KeepMode = "random_any",
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
        frame_strategy: str = FRAMES.strategy,
        fps: PositiveFloat = FRAMES.fps,
        min_frames: PositiveInt = FRAMES.min_frames,
        max_frames: PositiveInt = FRAMES.max_frames,
        num_frames: PositiveInt | None = None,
        video_start: float | None = None,
        video_end: float | None = None,
        min_pixels: PositiveInt = FRAMES.min_pixels,
        max_pixels: PositiveInt = FRAMES.max_pixels,
        total_pixels: PositiveInt | None = None,
        on_error: OnError = "keep",
        decoder: str = DEFAULT_DECODER,
        decode_workers: NonNegativeInt | None = None,
        decode_timeout: PositiveFloat | None = 120.0,
        prefetch: bool | NonNegativeInt = DEFAULT_PREFETCH,
        torch_threads: PositiveInt | None = None,
        result_store: str | None = None,
        result_store_content_hash: bool = False,
        max_in_flight: PositiveInt = DEFAULT_MAX_IN_FLIGHT,
        fast_decoding: FastDecoding = "auto",
        max_visual_tokens: PositiveInt | None = None,
        window_seconds: PositiveFloat | None = None,
        window_overlap: NonNegativeFloat = 0.0,
        merge_model: str | None = None,
        merge_prompt: str | None = None,
        max_retries: NonNegativeInt = DEFAULT_MAX_RETRIES,
        on_low_quality: OnLowQuality = "keep",
        quality_thresholds: dict | None = None,
        caption_format: CaptionFormat = "text",
        json_schema: dict | str | None = None,
        caption_lengths: dict | None = None,
        report_path: str | None = None,
        thumbnails: NonNegativeFloat | None = None,
        record_timing: bool | None = None,
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
            (simhash) to the original chunk text, 'all' keeps every candidate, 'consensus'
            keeps the one most similar on average to the others (minimum Bayes risk, Jaccard
            of word unigrams and bigrams; needs no original text, so it works on a bare video
            list). With N input samples the op yields N new samples for 'random_any',
            'similar_one_simhash' and 'consensus' and N * caption_num for 'all', plus the N
            originals when keep_original_sample.
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
            sizes the decoding window (``prefetch``). With windows (``window_seconds``) it is
            also the window requests per backend call, on every backend.
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
            process is killed and the sample gets a 'timeout' error record (with windows: one
            window, the time spent captioning not counted). None: no limit.
        :param prefetch: micro-batches of videos decoded ahead while the model captions the
            current one (True: the default, 2; False or 0: none); at most (prefetch + 1) *
            generation_batch_size decoded videos are held in memory. Two ahead absorb the
            uneven decoding times of different videos. Decoding runs ahead within one
            Data-Juicer batch, so the op's default ``batch_size`` is 16 *
            generation_batch_size rows (Data-Juicer's own default is 10 for GPU ops).
        :param torch_threads: torch intra-op threads while the op generates; None: on CPU
            with decoding processes, half the cores of the op process (the decoders use the
            rest), else torch's own setting. Restored after each batch.
        :param result_store: where each video's captions are kept as soon as they are made, so
            that a killed or repeated job reuses them (neither decoded nor generated again):
            a path (one SQLite file, for the processes of one machine), ``file:///PATH`` (a
            folder on a filesystem every node of a cluster mounts at PATH) or
            ``s3://BUCKET/PREFIX`` (an S3 bucket or S3-compatible service, shared by every
            node; credentials, region and endpoint from the environment only: AWS_* variables,
            AWS config files or an instance role; a URL carrying credentials is refused).
            None: no store. A store written by a dj_ops with another key layout is refused.
        :param result_store_content_hash: identify videos in the store by a hash of their bytes
            (found again after a move or copy) instead of path, size and modification time.
        :param max_in_flight: for the backends that batch by themselves (vllm, openai): most
            requests handed to the engine or server at once; decoded videos wait beyond it.
            The default suits a GPU engine's continuous batching; the openai backend also
            keeps at most ``model_params.max_concurrency`` requests on the wire.
        :param fast_decoding: the transformers backend's speed-ups (each prompt prefilled once,
            its candidates decoded with shared-prefix attention; the patch embedding as a
            matrix product): 'auto' runs them on the model types they were checked on, when
            the model routes attention through transformers' attention interface and
            ``model_params.attn_implementation`` is unset, and checks them against plain
            ``generate`` on the first micro-batch (a mismatch or failure falls back to plain
            ``generate``); 'off' never runs them. Each video's record says which path
            decoded it (``decoding``).
        :param max_visual_tokens: most tokens one video may take (Qwen-VL families; None: no
            budget). Before decoding, each video's frame count is lowered (down to
            ``min_frames``), then its pixels per frame (down to ``min_pixels``), until it fits;
            a video that cannot fit gets a ``context_length`` error record. The vllm and openai
            backends also derive a budget from the context (``max_model_len`` less the prompt's
            text and ``max_new_tokens``); the smaller one applies. Each video's record says
            what was used (``frames``).
        :param window_seconds: caption long videos window by window (None, the default: off).
            A video longer than this many seconds is decoded once and cut into windows of
            this length (the last may be shorter); each window is captioned from its own
            frames (sampled by the frame parameters over the window's span, with the window's
            true timestamps), then one text-only request merges the timestamped window
            captions into the video's caption, written where a caption goes. The record of
            each video lists its windows under ``windows`` (``start``, ``end``, ``caption``,
            ``error_kind``, ``error_message``); with ``caption_key`` they also go in
            ``<caption_key>_windows``. A window that fails is recorded with its error and the
            others are still captioned and merged. A video no longer than one window is
            captioned as without windows (one window in its record, no merge). Decoder pyav
            only; not with video_start/video_end. The quality gate checks every window and
            every merge; with result_store, each video is stored whole (its merged caption
            and its windows).
        :param window_overlap: seconds neighbouring windows share (0 <= overlap <
            window_seconds).
        :param merge_model: the model that merges a video's window captions: another model of
            the same OpenAI-compatible server (openai backend only). None: the captioning
            model, given no video.
        :param merge_prompt: the merge pass's instruction, followed by the window captions as
            ``[start s - end s] caption`` lines (None: one that keeps the events' order and
            each person or object's name the same across windows).
        :param max_retries: the quality gate's retries per video. Every candidate is always
            checked (``empty``, ``repetition``, ``truncated``: the token limit hit
            mid-sentence, ``refusal``, ``garbage``; see docs/quality.md); a video with a
            failing candidate is generated again, up to this many times, with the retry
            sampling (temperature 0.6, top_p 0.95, top_k 20, repetition_penalty 1.05; seeded
            ``seed + attempt``), and only its failing candidates are replaced. 0 (the default:
            retries cost generation time, and sample where the run was greedy) only records
            the flags. Each video's record holds, for its kept candidate, ``attempts`` (the
            generations made for it), ``quality_flags`` (the kept text's flags, empty when it
            passes) and ``attempt_flags`` (each attempt's flags, comma-joined, "" for a pass).
        :param on_low_quality: what a video whose candidate still fails after the retries
            becomes: 'keep' (the default) keeps it with its flags; 'error' gives it a
            ``low_quality`` error record (``status: error``, ``error_kind: low_quality``, the
            flags in ``error_message``), which ``on_error`` keeps, drops or raises like any
            error.
        :param quality_thresholds: the gate's thresholds, by name; unset keys keep their
            defaults: ``min_repeats`` 3 and ``min_loop_tokens`` 6 (a repetition loop),
            ``max_replacement_chars`` 0 (U+FFFD allowed), ``max_non_letter_share`` 0.5 and
            ``min_chars_for_share`` 4 (garbage), ``refusal_phrases`` (16 phrases, see
            docs/quality.md). An unknown key is refused, naming the valid ones.
        :param caption_format: 'text' (free text) or 'json': structured captions, decoded under
            ``json_schema`` by constrained decoding on every backend (transformers: llguidance;
            vllm: structured outputs with the guidance backend; openai: ``response_format``
            json_schema). Each video's record holds the document (``caption_json``, a string)
            and its renderings (``captions_by_length``); the caption text (after the video
            token, or in ``caption_key``, whose renderings then also go in the field
            ``<caption_key>_lengths``) is the first of ``caption_lengths``. A document that
            is not valid (a token limit that cut it) gets an ``invalid_json`` error record.
            Set ``sampling_params.max_new_tokens`` high enough for a whole document.
        :param json_schema: json mode's JSON Schema: a dict, the path of a .json file, or None
            for the default video-caption schema (summary, subjects, scene, camera, lighting,
            style, timeline). Refused at construction when invalid or with caption_format text.
        :param caption_lengths: json mode: named word budgets of the rendered captions, e.g.
            ``{long: 170, short: 40}`` (the default); the first is the text after the video
            token. Counted in words; a rendering never exceeds its budget.
        :param report_path: write the run report there (one self-contained HTML file: summary,
            charts, and a gallery of the frames each video was captioned from beside its
            captions, flags and errors; see ``dj-ops-report``) once the op's run ends; the
            closing log line names it. None (the default): no report. Refused under Ray's
            executor (no end of run in one process): run ``dj-ops-report`` on the export.
        :param thumbnails: share of videos (0 to 1) whose record keeps a small strip of the
            frames they were captioned from (``thumbnail``: at most 8 tiles of at most 64
            pixels, 24 kB of JPEG), made from the frames already decoded, for the report's
            gallery; chosen by a hash of the path, so the same videos every run. None: 1 when
            ``report_path`` is set, else 0 (none).
        :param record_timing: each video's record holds its ``timing`` (``decode_s``: its
            decoding's wall seconds, ``generate_s``: its share of generation's, ``finished``:
            when its result came back), for the report's throughput and time charts. None: on
            when ``report_path`` is set. Off, the record holds -1 / 0 there, so that a run's
            output is the same every time.
        :param args: extra args
        :param kwargs: extra kwargs
        """
        backend = resolve_backend(backend, enable_vllm)
        kwargs = data_juicer_resources(backend, generation_batch_size, kwargs)
        super().__init__(*args, **kwargs)
        children_end_with_this_process()  # the workers Data-Juicer forks end with this process
        self.config = parse_config(
            backend=backend, model=hf_model, caption_num=caption_num,
            output=OutputPolicy(mode=keep_candidate_mode, keep_original=keep_original_sample,
                                caption_key=caption_key, on_error=on_error),
            layout=TextLayout(text_key=self.text_key, video_key=self.video_key,
                              meta_key=Fields.meta, video_token=SpecialTokens.video,
                              eoc_token=SpecialTokens.eoc,
                              special_tokens=tuple(get_special_tokens().values()),
                              prompt_key=prompt_key, prompt=prompt, system_prompt=system_prompt),
            decoding=DecodingConfig(
                decoder=decoder, workers=decode_workers, timeout_s=decode_timeout,
                prefetch=DEFAULT_PREFETCH if prefetch is True else int(prefetch),
                torch_threads=torch_threads, max_in_flight=max_in_flight),
            frames=FrameSettings(
                strategy=frame_strategy, fps=fps, min_frames=min_frames, max_frames=max_frames,
                num_frames=num_frames, video_start=video_start, video_end=video_end,
                min_pixels=min_pixels, max_pixels=max_pixels, total_pixels=total_pixels,
                max_visual_tokens=max_visual_tokens),
            model_params=model_params, sampling_params=sampling_params,
            generation_batch_size=generation_batch_size, seed=seed, fast_decoding=fast_decoding,
            store=StoreConfig(path=result_store, content_hash=result_store_content_hash),
            windows=WindowConfig(seconds=window_seconds, overlap=window_overlap,
                                 merge_model=merge_model, merge_prompt=merge_prompt),
            quality=GateConfig(max_retries=max_retries, on_low_quality=on_low_quality,
                               thresholds=parse_thresholds(quality_thresholds)),
            structured=parse_structured(caption_format, json_schema, caption_lengths),
            thumbnails=ThumbnailSettings(op_report.default_thumbnail_share(thumbnails,
                                                                            report_path)),
            timing=bool(report_path) if record_timing is None else record_timing,
        )
        op_report.check_report_path(report_path)
        self.report_path = report_path
        # What builds this op's backend on a device (the captioner of each process calls it
        # once and owns the backend: it closes it). Copies of the op are equal to it, so that
        # copies in one Ray worker share one captioner (cluster/per_process.py).
        self.model_key = BackendLoader(backend, self.config.model)
        self._captioner: Captioner | None = None  # per process, built on its first batch
        self._progress_board: str | None = None  # while run() runs: where progress goes
        spread.install()  # under a Ray executor: prepare_ray_dataset runs before the op

    def prepare_ray_dataset(self, data):
        """Under Data-Juicer's Ray executors, before the op is mapped over ``data``: the rows
        cut into blocks of one batch, at least one per replica, so that every node works
        (dj_ops/cluster/spread.py)."""
        return spread.spread_over_replicas(self, data)

    @property
    def prefetch(self) -> int:
        return self.config.decoding.prefetch

    @property
    def torch_threads(self) -> int | None:
        """Torch threads this process generates with (None: torch's own; set up on the first
        batch)."""
        return self._captioner.threads if self._captioner else None

    @property
    def outcome_log(self) -> OutcomeLog:
        """This process's counts of captioned and failed rows."""
        return self._captioner.outcomes if self._captioner else OutcomeLog(OP_NAME)

    def __getstate__(self) -> dict:
        """A copy sent to another process starts without this process's captioner."""
        return {**self.__dict__, "_captioner": None}

    def run(self, dataset, *, exporter=None, tracer=None):
        """Data-Juicer's run, with progress per video and a clean stop on SIGTERM
        (:class:`~dj_ops.runtime.op_run.OpRun`); then one INFO line counting the outcomes over
        the whole output and one saying where the output and the records go (a warning, also
        before the run, when the export will not hold the records)."""
        target = ExportTarget.of(exporter)
        started = time.time()
        warn_records_elsewhere(OP_NAME, target)
        with OpRun(OP_NAME, dataset, self.video_key, self.config.store.path, target) as run:
            self._progress_board = run.board_address  # the op processes report to it
            try:
                dataset = super().run(dataset, exporter=exporter, tracer=tracer)
            finally:
                self._progress_board = None
                self.close()
        log_run_outcomes(OP_NAME, dataset, target, self.config.output.on_error == "drop")
        report = None
        if self.report_path:
            layout = self.config.layout
            report = op_report.write_op_report(
                dataset, self.report_path, source=target.export_path if target else OP_NAME,
                started=started,
                layout=ReportLayout(layout.video_token, layout.eoc_token,
                                    self.config.output.caption_key, layout.meta_key,
                                    layout.text_key))
            logger.info(f"{OP_NAME}: report: {report.path} ({report.size / 1e6:.1f} MB, "
                        f"{len(report.shown.entries)} of {report.stats.videos} videos shown)")
        run.finish(dataset, Fields.meta, None if report is None else str(report.path))
        return dataset

    def close(self) -> None:
        """Stop this process's decoding processes, close its result store and its backend (a
        later batch sets them up again; the counts go on)."""
        if self._captioner is not None:
            self._captioner.close()

    def _op_processes(self) -> int:
        """How many processes run this op on this machine (their decoders share its cores).

        Under Ray, ``num_proc`` is None and Data-Juicer's ``runtime_np()`` fails on it; each
        Ray actor holds one GPU (``num_gpus: 1``), so a node runs one actor per GPU.
        """
        if self.num_proc is None:
            return max(1, cuda_device_count())
        return self.runtime_np()

    def process_batched(self, samples: dict[str, list], rank: int | None = None):
        if self._captioner is None:  # copies in one Ray worker share one (cluster/per_process)
            self._captioner = shared_captioner(self.model_key, lambda: Captioner(
                self.config, self.model_key, OP_NAME, self._progress_board))
        if not self._captioner.ready:
            placement = ProcessPlacement(rank, self.use_cuda(), self._op_processes())
            self._captioner.setup(placement)
        return self._captioner.caption(samples)
