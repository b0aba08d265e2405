"""The captioning op's parameters: one table, the single source of their names, types, defaults,
mode choices, command-line options and reference text.

Data-Juicer builds its recipe parser from the op's explicit ``__init__`` signature and its
``:param x:`` docstring, so the signature stays written out in the op; ``tests/test_parameters.py``
checks it against this table (names, order, annotations, defaults, one ``:param`` each), and the
README's parameter reference and ``dj-ops-caption``'s options are generated from it
(:mod:`dj_ops.captioning.parameter_docs`, :mod:`dj_ops.commands.caption`). Mode choices come
from the tables that define them (the selectors, the backends, the decoders, the samplers) or,
for modes with no table of their own, from the tuples here, so a new mode is one row.

This module imports no Data-Juicer, torch or model code: ``dj-ops-caption --help`` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from dj_ops.backends.base import BACKENDS, FAST_DECODING_MODES
from dj_ops.backends.streaming import DEFAULT_MAX_IN_FLIGHT
from dj_ops.captioning.selection import SELECTORS
from dj_ops.video.decoders import DECODERS, DEFAULT_DECODER
from dj_ops.video.settings import STRATEGIES, FrameSettings

# Modes that have no table of their own.
ON_ERROR = ("keep", "drop", "raise")
ON_LOW_QUALITY = ("keep", "error")
CAPTION_FORMATS = ("text", "json")

DEFAULT_MODEL = "Qwen/Qwen3-VL-8B-Instruct"
DEFAULT_PREFETCH = 2
# Retries are asked for, not on by default: a retry costs a generation per failing candidate
# and samples (a greedy run's failing captions become sampled ones); the flags are recorded
# always, so a run shows its failure rate before one chooses to pay for retries.
DEFAULT_MAX_RETRIES = 0
FRAMES = FrameSettings()  # the frame parameters' defaults

# The annotations of the op's mode parameters, from their tables (pydantic and Data-Juicer's
# parser check recipe values against them).
KeepMode = Literal[tuple(SELECTORS)]
OnError = Literal[ON_ERROR]
FastDecoding = Literal[FAST_DECODING_MODES]
OnLowQuality = Literal[ON_LOW_QUALITY]
CaptionFormat = Literal[CAPTION_FORMATS]


@dataclass(frozen=True)
class Parameter:
    """One parameter of the op.

    :param name: its name in the signature and in recipes.
    :param annotation: its type in the signature.
    :param default: its default in the signature.
    :param meaning: the README's reference text (markdown).
    :param shown: the README's default column where the default needs words ("" : the value).
    :param choices: its modes (from the table that defines them), for the CLI and the README.
    :param cli: its ``dj-ops-caption`` option: "" for ``--name-with-dashes``, another flag, or
        None when it has none (then ``why_no_cli`` says why).
    :param why_no_cli: why a parameter has no command-line option.
    """

    name: str
    annotation: Any
    default: Any
    meaning: str
    shown: str = ""
    choices: tuple[str, ...] = ()
    cli: str | None = ""
    why_no_cli: str = ""

    @property
    def flag(self) -> str | None:
        """The command-line flag (None: not on the command line)."""
        if self.cli is None:
            return None
        return self.cli or "--" + self.name.replace("_", "-")


P = Parameter
PARAMETERS: tuple[Parameter, ...] = (
    P("hf_model", str, DEFAULT_MODEL, "model id or local path", cli="--model"),
    P("enable_vllm", bool, False, "use the vLLM engine (same as `backend: vllm`)", cli=None,
      why_no_cli="--backend vllm says it"),
    P("caption_num", PositiveInt, 1, "candidates generated per video"),
    P("keep_candidate_mode", KeepMode, "random_any",
      "`random_any`, `similar_one_simhash` (nearest to the original chunk text), `all`, or "
      "`consensus` (the candidate most similar to the others; no original text needed, see "
      "docs/quality.md)", choices=tuple(SELECTORS), cli="--keep"),
    P("keep_original_sample", bool, True, "keep each original before its generated samples",
      cli=None, why_no_cli="the command writes captions into a field (caption_key): rows are "
      "never added"),
    P("caption_key", str | None, None, "write captions into this field of each sample instead "
      "of adding samples (see [Captions in a field](#captions-in-a-field-instead-of-new-samples))",
      cli=None, why_no_cli="the command always writes the field 'caption'"),
    P("prompt", str | None, None, "prompt for all samples", shown="1–2 sentence description"),
    P("prompt_key", str | None, None, "field holding a per-sample prompt (takes precedence)",
      cli=None, why_no_cli="the command builds its rows from paths: no per-row prompt field"),
    P("system_prompt", str | None, None,
      "optional system prompt (an empty or blank one is refused)"),
    P("model_params", dict | None, None,
      "model loading options (`dtype`, `attn_implementation`, `processor_kwargs`, "
      "`quantization`, `model_type`, ...); vLLM engine arguments; the server settings of "
      "`backend: openai` (see [Backends](#backends)). Unknown keys are refused at construction, "
      "naming the valid ones (vLLM's engine checks its own)", shown="`{}`"),
    P("sampling_params", dict | None, None,
      "`max_new_tokens`/`max_tokens`, `min_new_tokens`, `temperature`, `top_p`, `top_k`, "
      "`do_sample`, `repetition_penalty`, `stop`; unknown keys are refused. What ran is in each "
      "record's `generation`",
      shown="256 new tokens; greedy for `caption_num` 1; for `caption_num` > 1, sampled at "
            "temperature 0.7, top_p 0.9 (so that candidates differ) unless set"),
    P("backend", str | None, None, "generation backend by name: "
      "`transformers`, `vllm` or `openai` (see [Backends](#backends))",
      shown="`transformers`", choices=tuple(BACKENDS)),
    P("generation_batch_size", PositiveInt, 8,
      "videos per `generate` call of the `transformers` backend; `vllm` and `openai` get each "
      "video once decoded (`max_in_flight`), and this only sizes their decoding window; with "
      "windows, the window requests per backend call"),
    P("seed", int | None, None, "fixes sampling and `random_any`: reproducible output"),
    P("frame_strategy", str, FRAMES.strategy,
      "`fps` (Qwen-VL style), `uniform`, or CogVLM2-Llama3-Caption's `chat` (the frame nearest "
      "each whole second, at most 24) and `base` (24 frames over the first 60 s)",
      choices=STRATEGIES),
    P("fps", PositiveFloat, FRAMES.fps, "frames per second of the `fps` strategy"),
    P("min_frames", PositiveInt, FRAMES.min_frames, "fewest frames of the `fps` strategy"),
    P("max_frames", PositiveInt, FRAMES.max_frames, "most frames of the `fps` strategy"),
    P("num_frames", PositiveInt | None, None, "frames per video for `uniform`"),
    P("video_start", float | None, None, "start of the time window to caption, in seconds"),
    P("video_end", float | None, None, "end of the time window to caption, in seconds"),
    P("min_pixels", PositiveInt, FRAMES.min_pixels,
      "fewest pixels per frame after resizing (aspect kept, rounded to the model's patch "
      "factor)"),
    P("max_pixels", PositiveInt, FRAMES.max_pixels, "most pixels per frame after resizing"),
    P("total_pixels", PositiveInt | None, None, "pixel budget for all frames of one video"),
    P("on_error", OnError, "keep",
      "a sample that cannot be captioned is kept unchanged with an error record (`keep`, loses "
      "nothing), left out (`drop`, still counted in the log) or stops the job (`raise`); see "
      "[Bad input](#bad-input-faults-and-long-runs)", choices=ON_ERROR),
    P("decoder", str, DEFAULT_DECODER,
      "video decoder: `pyav`, `torchcodec` (`pip install \"dj-ops[torchcodec]\"`, needs system "
      "FFmpeg) or `decord` (`pip install \"dj-ops[decord]\"`)", choices=tuple(DECODERS)),
    P("decode_workers", NonNegativeInt | None, None,
      "decoding processes per op process; `0` decodes in the op's own thread (no overlap, no "
      "hard timeout)", shown="cores / op processes"),
    P("decode_timeout", PositiveFloat | None, 120.0,
      "seconds one video (with windows: one window) may take to decode; past it its process is "
      "killed and the sample gets a `timeout` error record (`null`: no limit)"),
    P("prefetch", bool | NonNegativeInt, DEFAULT_PREFETCH,
      "micro-batches decoded ahead while the model captions the current one (`true` = 2, "
      "`false`/`0` = off); at most (`prefetch` + 1) × `generation_batch_size` decoded videos "
      "are held"),
    P("torch_threads", PositiveInt | None, None,
      "torch threads while the op generates on CPU beside its decoding processes (they take "
      "the rest); restored after each batch. On a GPU, or with `decode_workers: 0`, torch's own "
      "setting", shown="on CPU: half the op process's cores"),
    P("result_store", str | None, None,
      "where captions are kept as soon as they are made, so that a killed or repeated job "
      "reuses them: a path (one SQLite file, one machine), `file:///PATH` (a folder every node "
      "mounts) or `s3://BUCKET/PREFIX` (credentials from the environment only); see "
      "[Resume a killed job](#resume-a-killed-job-the-result-store)", cli="--store"),
    P("result_store_content_hash", bool, False,
      "identify videos in the store by a hash of their bytes (found again after a move or "
      "copy) instead of path, size and modification time"),
    P("max_in_flight", PositiveInt, DEFAULT_MAX_IN_FLIGHT,
      "`vllm` and `openai`: most requests in the engine or server at once (the default suits a "
      "GPU engine's continuous batching)"),
    P("fast_decoding", FastDecoding, "auto",
      "the transformers backend's speed-ups (see [Speed-ups that check themselves](#speed-ups-"
      "that-check-themselves)): `auto` runs them where they were checked and checks them again "
      "on the first micro-batch; `off` never runs them", choices=FAST_DECODING_MODES),
    P("max_visual_tokens", PositiveInt | None, None,
      "most tokens one video may take (Qwen-VL families); `vllm` and `openai` also derive one "
      "from the context (see [Frame budget](#frame-budget))"),
    P("window_seconds", PositiveFloat | None, None,
      "caption a video longer than this window by window, then merge the window captions "
      "into one (see [Long videos](#long-videos-windows-and-the-merge))"),
    P("window_overlap", NonNegativeFloat, 0.0,
      "seconds neighbouring windows share (smaller than `window_seconds`)"),
    P("merge_model", str | None, None,
      "the model that merges the window captions: another model of the same OpenAI-compatible "
      "server (`openai` backend only)", shown="the captioning model"),
    P("merge_prompt", str | None, None,
      "the merge's instruction, followed by the timestamped window captions",
      shown="events in order, each entity named the same throughout"),
    P("max_retries", NonNegativeInt, DEFAULT_MAX_RETRIES,
      "the quality gate: every candidate is checked (empty, repetition loop, cut mid-sentence "
      "by the token limit, refusal, garbage); a video with a failing candidate is generated "
      "again up to this many times with the retry sampling (temperature 0.6, top_p 0.95, "
      "top_k 20, repetition_penalty 1.05), replacing only the failing candidates; `0` records "
      "the flags only (see [docs/quality.md](docs/quality.md))"),
    P("on_low_quality", OnLowQuality, "keep",
      "a caption still failing after the retries is kept with its flags (`keep`) or gives the "
      "video a `low_quality` error record (`error`, then handled by `on_error`)",
      choices=ON_LOW_QUALITY),
    P("quality_thresholds", dict | None, None,
      "the gate's thresholds by name (`min_repeats`, `min_loop_tokens`, "
      "`max_replacement_chars`, `max_non_letter_share`, `min_chars_for_share`, "
      "`refusal_phrases`); unset keys keep their documented defaults", shown="`{}`"),
    P("caption_format", CaptionFormat, "text",
      "`text`, or `json`: every caption a JSON document under `json_schema`, by constrained "
      "decoding on every backend (see [Structured captions](#structured-captions))",
      choices=CAPTION_FORMATS),
    P("json_schema", dict | str | None, None,
      "json mode's JSON Schema: inline, or the path of a `.json` file",
      shown="the default video-caption schema"),
    P("caption_lengths", dict | None, None,
      "json mode: named word budgets of the rendered captions; the first goes after the video "
      "token", shown="`{long: 170, short: 40}`"),
    P("report_path", str | None, None,
      "write the run report there once the op's run ends: one self-contained HTML page (summary, "
      "charts, a gallery of each video's frames beside its captions, flags and errors; see "
      "[See the run](#see-the-run-the-report)); refused under Ray's executor (run "
      "`dj-ops-report` on the export)", cli="--report"),
    P("thumbnails", NonNegativeFloat | None, None,
      "share of videos (0 to 1) whose record keeps a small strip of the frames they were "
      "captioned from (`thumbnail`), chosen by a hash of the path", shown="1 with `report_path`, "
      "else 0"),
    P("record_timing", bool | None, None,
      "each video's record holds its `timing` (decoding seconds, its share of generation's, "
      "when it finished); off, those fields are -1 / 0 so that a run's output is the same every "
      "time", shown="on with `report_path`"),
)
BY_NAME: dict[str, Parameter] = {p.name: p for p in PARAMETERS}

# Data-Juicer's own parameters whose defaults the op sets (they are in no signature of ours).
DATA_JUICER_PARAMETERS: tuple[Parameter, ...] = (
    P("batch_size", PositiveInt, None,
      "Data-Juicer's rows per batch; decoding runs ahead within a batch, so the op's default is "
      "larger than Data-Juicer's 10 for GPU ops (memory is bounded by `generation_batch_size` "
      "and `prefetch`, not by this)", shown="16 × `generation_batch_size`", cli=None,
      why_no_cli="rows per batch matter to recipes, not to one folder's run"),
    P("num_proc", PositiveInt | None, None,
      "Data-Juicer's worker processes, each with its own model (`vllm`: always 1)",
      shown="one per GPU; on CPU as many as cores and memory allow"),
)
