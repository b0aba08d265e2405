"""Run the CPU benchmarks, then write the plot and ``docs/performance.md`` from their results.

``python -m bench.report`` runs everything (tens of minutes on 2 cores);
``python -m bench.report --no-run`` only rewrites the plot and the page from
``bench/results/*.json``; ``--requests`` scales the run down.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from bench.bench_decode import reads_section
from bench.measure import RESULTS_DIR, load, load_check, markdown_table, publish_note
from bench.plot import plot

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "performance.md"
THROUGHPUT_RUNS = {  # results name -> extra arguments of bench.throughput
    "throughput": [],
}
THROUGHPUT_TITLES = {
    "throughput": "Throughput, CPU",
}
MODE_COLUMNS = [("mode", "mode"), ("videos_per_s", "videos/s"), ("seconds", "wall s"),
                ("cpu_seconds", "CPU s"), ("frames_per_video", "frames/video"),
                ("tokens_per_caption", "tokens/caption")]
RATIO_COLUMNS = [("scenario", "scenario"), ("speedup_vs_baseline", "op vs baseline"),
                 ("per_round", "per round (median, min-max)"),
                 ("cpu_time_ratio_vs_baseline", "CPU-time ratio"),
                 ("speedup_if_baseline_decoded_per_call", "vs decode-per-call baseline"),
                 ("op_time_over_decode_floor", "op time / decode floor")]

METHOD = """\
## Method

`python -m bench.report` runs the scripts below and rewrites this page and the figure
(`--no-run` rewrites them from the saved `bench/results/*.json`).

- **Throughput** (`python -m bench.throughput`): the sample clips (`../shared/data/videos`, or
  generated clips without it) repeated to 256 requests, each under its own path (a link), so
  that every request costs one decode in every mode. The tiny random-weight Qwen3-VL of
  `dj_ops.testing.tiny_models`, on CPU, with the op's default frame settings (fps 2, 4 to 32
  frames, at most 448 x 448 pixels). Three modes run in one process, in two interleaved rounds
  of 128 videos (order alternating), so that the machine's load hits all alike; a round is one
  Data-Juicer batch of the op's default size, so the op's pipeline fills and drains once per
  round, as it does once per batch in a real run:
  - `op`: `vlm_video_captioning_mapper` with its defaults (`op.process` on Data-Juicer batches
    of 128 rows, `num_proc` 1, `generation_batch_size` 8, two decoding processes running ahead
    of generation at a lower CPU priority), with its best `torch_threads` (1 or every core,
    each tried on two videos first);
  - `baseline`: Data-Juicer's `video_captioning_from_vlm_mapper` loop (`bench/baseline.py`) with
    the stock parts Data-Juicer uses: its own `AutoProcessor` and `from_pretrained` model (same
    checkpoint, dtype and device as the op's; not the op's processor path or patch embedding).
    One video at a time: decode (inside the loop, the op's PyAV decoder decoding every frame as
    FFmpeg in the processor would: the same frames, bit for bit), one processor call, then
    `generate` once per candidate (each call re-encodes the video and re-reads the prompt),
    under `torch.no_grad()`, on its best torch thread count (1 or every core, tried first;
    runs saved before this choice used torch's default, 2);
  - `decode floor`: decoding the needed frames alone with the op's decoder (skipping unreferenced
    frames), one video at a time, FFmpeg's automatic threading.

  CPU seconds are the benchmark process's own: the op's exclude its decoding processes (about
  0.3 CPU-s per video), so the CPU-time ratio overstates the op's efficiency; wall time is the
  measure.

  Every mode decodes the same frames and generates exactly the same number of tokens per
  caption (`min_new_tokens = max_new_tokens`: random weights stop anywhere otherwise); both are
  printed beside each figure and checked (`same frames`). With `caption_num` 4 both sample
  (temperature 0.7, top-p 0.9, the op's default for several candidates).
  Data-Juicer's op decodes a video once per video (its `apply_chat_template` call sits outside
  the candidate loop), so the baseline does too; the column "vs decode-per-call baseline" adds
  `caption_num - 1` decodes (timed by the decode-floor mode) for comparison with a baseline that
  decoded before every `generate` call.
- **Scaling** (`python -m bench.scaling`): the op alone, one fresh process per point (so that
  peak resident memory is the point's own), `caption_num` 1, 32 tokens.
- **GPU** (`python -m bench.gpu --device cuda`): see its section.

**Caveat.** The machine has 2 cores, sometimes shared with other work; its 1-minute load
average is recorded beside each ratio (it includes the benchmark's own processes: the op runs
three, so about 2.4 on a machine doing nothing else). Load changes the ratios: the baseline's
batch-1 steps on two threads stall when another process takes a core, so a busy machine
inflates the op's lead. A ratio measured while the load rose above 1.5 x the cores
(`bench.measure.QUIET_LOAD_PER_CORE`) is printed as NOT PUBLISHABLE, here and by the scripts.
"""

PROFILE = """\
## What the profiles showed, and what changed

Profiled with cProfile, py-spy (`--subprocesses`, the decoding processes too) and
`torch.profiler` on the tiny model (`caption_num` 4, 128 tokens), per phase: decoding, moving
frames, processor, vision tower, prefill, decoding steps.

First session:

1. **Padded batch prefill.** Left padding put an attention mask on every prefill (masked
   attention over 3,000 tokens: 3.4x the time of causal), padded positions went through every
   layer, and `generate(num_return_sequences=k)` repeated every prompt k times *before* the
   prefill. Each prompt is now prefilled alone, unpadded, once (`dj_ops/backends/prefill.py`).
   Greedy outputs are token-for-token those of plain batched `generate` (`tests/test_prefill.py`).
2. **Growing cache.** `DynamicCache` copied itself at every token: ~40% of decoding 32 rows over
   3,400 cached tokens. The cache is preallocated.
3. **Decoding overlapped with generation** in worker processes, up to two micro-batches ahead
   (`dj_ops/ops/pipeline.py`).

Second session (the pipeline barely ran):

4. The op's default Data-Juicer `batch_size` was 10: decoding could run ahead only within 10
   rows. It is now 16 x `generation_batch_size`; memory is bounded by `prefetch`.
5. Torch's two threads beside busy decoding processes were slower than one (an OpenMP thread
   that loses its core stalls the others): on CPU the op generates on half its cores
   (`torch_threads`). The decoding processes decode each video in one FFmpeg thread (automatic
   threading cost 25-40% more CPU per video).
6. Transformers' Qwen-VL video processor made three float-sized copies; patchifying the uint8
   frames first, then converting once (`dj_ops/adapters/qwen_patchify.py`, bit-identical) is 3x
   faster.

Third session. Per video the op then spent about 0.4 CPU-s decoding and 0.4 CPU-s in its own
process; the baseline keeps both cores busy, so at best the op was ~4x. Less work per video:

7. **Shared-prefix attention** (`dj_ops/backends/shared_prefix.py`). The k candidates of a
   video read k copies of its ~3,000-token prompt cache at every step. Now the prompt's cache is
   kept once; each step attends the k candidates' queries to it in one matrix product, each
   candidate to its own new tokens, and merges the two softmaxes (cascade attention, registered
   through transformers' `AttentionInterface`; no mask is built). `generate` is fed only each
   prompt's last token: it had copied the padded ids, mask and 4-row position ids of the whole
   prompt at every step. 8 videos, k 4: `generate` 1.55 s -> 0.91 s. Greedy outputs still equal
   plain batched `generate`'s.
8. **Patch embedding as a matrix product** (`dj_ops/adapters/patch_embedding.py`). Qwen-VL cuts
   pixels into patches with a `Conv3d` whose kernel equals its stride: 61 ms for 12,288 patches
   on one core against 14 ms for the same product as a `linear` on the same weights.
9. **Skipping unreferenced frames** (`dj_ops/video/decode.py`). FFmpeg's `skip_frame` NONREF,
   set per packet, skips the B-frames that are not wanted and that no frame references; wanted
   frames are bit-identical (tested on real, variable-rate, scanned and HEVC clips, both thread
   modes). Decoding the five clips: 1.89 -> 1.51 CPU-s; 20-40% on the four with B-frames.
10. **Frames through shared memory** (`dj_ops/video/transport.py`). Pickling 17 MB of frames
    per video over the worker's socket cost ~70 ms in the worker and ~50 ms in the op. The
    worker now stacks the frames straight into a `memfd_create` file
    (`dj_ops/video/shared_memory.py`) and passes its descriptor; the op maps it.
11. **Decoder priority.** Two decoding processes and the model's process split 2 cores evenly,
    so the model, the bottleneck, ran on two thirds of a core. Decoding processes now run at
    nice +5: 120 videos 46 s -> 39 s.
12. **The baseline made stock.** It had shared the op's loaded backend, so items 6, 8 and 9 sped
    it up too; Data-Juicer's op uses transformers' own processor and model. It now loads its
    own (`bench/baseline.py`); frames stay bit-identical (it decodes every frame).

The op alone (`caption_num` 4, 128 tokens, 2 cores), per video: 0.41 CPU-s in its own process
and 0.39 in its decoding processes at the start of the session (40 videos, 2.0 videos/s);
0.30 and 0.31 at its end (120 videos, 3.1 videos/s).

What is left (measured, not built): the op's process spends ~70 ms per video converting
pixels to float (page faults on fresh 70 MB buffers: half of it in isolation; a process-wide
`mallopt` saved 5% of the op's CPU, not adopted); decoding and the model now take about the
same CPU per video, so both must shrink for more; the last micro-batch of each Data-Juicer
batch runs on one core (a second torch thread does not help the tiny model: its operators are
too small). Checked, unchanged: `torch.inference_mode` in the op (the baseline uses
`no_grad`, as Data-Juicer's op); requests sorted by cost before
batching; one processor call per video.
"""


def _throughput_section(title: str, result: dict) -> str:
    rows, ratios = [], []
    for name, scenario in result["scenarios"].items():
        for mode, values in scenario["modes"].items():
            rows.append({"mode": f"{name}: {mode}", **values})
        spread = scenario["speedup_per_round"]
        ratios.append({"scenario": name, **scenario,
                       "per_round": f"{spread['median']} ({spread['min']}-{spread['max']})"})
    machine = result["machine"]
    sizes = ", ".join(f"{s['workload']['requests']}" for s in result["scenarios"].values())
    loads = ", ".join(str(s.get("load_avg_1m_during")) for s in result["scenarios"].values())
    threads = "; ".join(f"{name}: {s.get('torch_threads', result.get('torch_threads'))}"
                        for name, s in result["scenarios"].items())
    notes = "; ".join(f"{name}: {publish_note(scenario_load(s, machine))}"
                      for name, s in result["scenarios"].items())
    head = (f"## {title}\n\nVideos per scenario: {sizes}; torch threads {threads}; mean "
            f"1-minute load average during each scenario: {loads} (on {machine['cpus']} "
            f"cores). {notes}.\n\n")
    return (head + markdown_table(ratios, RATIO_COLUMNS) + "\n\n"
            + markdown_table(rows, MODE_COLUMNS) + "\n")


def _builtin_section(result: dict) -> str:
    builtin = result.get("data_juicer_builtin") or {}
    lines = ["## Data-Juicer's own op", "",
             f"`{builtin.get('op')}` (py-data-juicer 1.6.1), torchcodec usable: "
             f"{builtin.get('torchcodec_usable')}. It cannot be timed: it produces nothing.", ""]
    for attempt, outcome in (builtin.get("attempts") or {}).items():
        what = outcome.get("error") or f"returned {outcome['returned_rows']} rows"
        lines.append(f"- {attempt}: {what}")
    lines += ["", "Why: its Hugging Face path calls `model.generate(**inputs, max_new_tokens=128, "
              "**sampling_params)` and Data-Juicer's `update_sampling_params` always puts "
              "`max_new_tokens` into `sampling_params` (TypeError on every video); and its "
              "`process_batched` returns `{}` whenever it has rows to return (an inverted "
              "check), so even a sample without videos is lost.", ""]
    return "\n".join(lines)


def _scaling_section(scaling: dict) -> str:
    parts = ["## Scaling (op alone)", "",
             f"Base workload: {scaling['workload']}. Each point ran {scaling.get('repeats', 1)} "
             "times, round-robin; the table keeps its fastest run and its highest peak memory. "
             "The batch-size and video-count sweeps use one torch thread. Videos per "
             "CPU-second count the op's own process only (its decoding processes run beside "
             "it).", ""]
    columns = [("videos_per_s", "videos/s"), ("videos_per_cpu_s", "videos per CPU-s"),
               ("runs_videos_per_s", "videos/s of each run"), ("peak_rss_mib", "peak RSS MiB"),
               ("rss_after_load_mib", "RSS after load MiB"), ("torch_threads", "threads")]
    for name, rows in scaling["sweeps"].items():
        field = next(iter(rows[0]))
        parts += [f"### {name}", "", markdown_table(rows, [(field, field), *columns]), ""]
    return "\n".join(parts)


def _gpu_section(gpu: dict | None) -> str:
    head = ("## GPU (Qwen2.5-VL-7B shape)\n\n`python -m bench.gpu --device cuda` builds a "
            "random-weight model from Qwen2.5-VL-7B's public config (hidden 3584, 28 layers, 28 "
            "heads, 4 KV heads, intermediate 18944, vocabulary 152064; vision depth 32, hidden "
            "1280; 8.29 B parameters) with the tiny models' tokenizer and processor, and runs "
            "24 frames of about 448 x 448 pixels per video, exactly 128 new tokens, op vs "
            "baseline, reporting videos/s, generated tokens/s and model FLOP/s (vision once, "
            "prefill once, every generated token; `bench/flops.py`) as a fraction of the GPU's "
            "peak dense bf16 rate.\n\n")
    if not gpu:
        return head + "**Not run**: no GPU was available in this session.\n"
    rows = []
    for k, result in gpu["caption_num"].items():
        for mode in ("op", "baseline"):
            rows.append({"caption_num": k, "mode": mode, **result[mode],
                         "speedup": result["speedup_vs_baseline"] if mode == "op" else None})
    columns = [("caption_num", "caption_num"), ("mode", "mode"), ("videos", "videos"),
               ("videos_per_s", "videos/s"), ("generated_tokens_per_s", "tokens/s"),
               ("model_tflops_per_s", "TFLOP/s"), ("fraction_of_peak_bf16", "of peak"),
               ("peak_gpu_memory_gib", "peak GiB"), ("speedup", "speedup")]
    return head + f"Device: {gpu['machine']['gpu']}.\n\n" + markdown_table(rows, columns) + "\n"


def _store_section(store: dict) -> str:
    """The result store's cost (``bench/store_overhead.py``)."""
    per_round = store["store_over_plain_wall_per_round"]
    cpu_per_round = store["store_over_plain_op_cpu_per_round"]
    return "\n".join([
        "## Result store overhead", "",
        f"`python -m bench.store_overhead`: {store['workload']['requests']} unseen videos per "
        f"round, {store['workload']['rounds']} rounds, caption_num 1, 16 tokens, the op with and "
        f"without `result_store` (load average {store['load_avg_1m_during']} during the run).", "",
        f"- Time spent inside the store (keys, lookups, one write per micro-batch): "
        f"{store['store_own_seconds']} s of {store['seconds']['store']} s, "
        f"**{100 * store['store_own_share_of_store_mode']:.2f}%** of the op's time.",
        f"- The op process's CPU seconds with / without the store: "
        f"{store['store_over_plain_op_cpu']} (per round {cpu_per_round}).",
        f"- Wall time with / without: {store['store_over_plain_wall']} (per round {per_round}): "
        "on a loaded machine this spread is the machine's, not the store's.",
        f"- Re-running over stored videos: {store['reuse_seconds']} s for the "
        f"{store['workload']['requests']} videos (nothing decoded or generated).", ""])


def _run_report_section(result: dict) -> str:
    """What the run report costs the op, and a report's build time
    (``bench/report_overhead.py``)."""
    work, build = result["workload"], result["build"]
    return "\n".join([
        "## Run report: frame strips, timing, build time", "",
        f"`python -m bench.report_overhead`: {work['requests']} unseen videos per round, "
        f"{work['rounds']} rounds, caption_num {work['caption_num']}, {work['new_tokens']} tokens, "
        "the op's default frames, with and without what `report_path` turns on (`thumbnails: 1`, "
        f"`record_timing`; load average {result['load_avg_1m_during']} during the run).", "",
        f"- Time spent making strips and timing records: {result['report_own_seconds']} s of "
        f"{result['seconds']['report']} s, **{100 * result['report_own_share_of_op']:.2f}%** of "
        f"the op's time (target: at most {100 * result['target_share']:.0f}%).",
        f"- The op process's CPU seconds with / without: {result['report_over_plain_op_cpu']} "
        f"(per round {result['report_over_plain_op_cpu_per_round']}).",
        f"- Wall time with / without: {result['report_over_plain_wall']} (per round "
        f"{result['report_over_plain_wall_per_round']}): on a loaded machine this spread is the "
        "machine's, not the strips'.",
        f"- Building the report of {build['rows']:,} rows (a {build['export_mb']} MB jsonl with "
        f"a strip on every captioned row) with `dj-ops-report`'s code: **{build['seconds']} s** "
        f"(load average {build['load_avg_1m_before']}), a {build['report_mb']} MB page showing "
        f"{build['shown']} videos. A page is bounded by its gallery: at most "
        f"{build['gallery_limit']} videos and {build['gallery_max_mb']:.0f} MB of cards "
        "(`--limit`, `--max-mb`), plus the summary and the charts (tens of kB), whatever the "
        "run's size.", ""])


def _long_video_section(result: dict) -> str:
    """One decoding pass over a long video's windows vs. the windows as separate clips
    (``bench/long_video.py``)."""
    clip, windows, variants = result["clip"], result["windows"], result["variants"]
    rows = [{"way": name, "wall": f"{v['seconds']['median']:.2f}",
             "cpu": f"{v['cpu_seconds']['median']:.2f}", "rss": f"{v['peak_rss_mib']:.0f}",
             "frames": v["frames"]} for name, v in variants.items()]
    ratios = result["time_vs_one_pass"]
    return "\n".join([
        "## Long videos: one decoding pass vs. separate clips", "",
        f"`python -m bench.long_video`: a generated {clip['seconds'] // 60}-minute clip "
        f"({clip['size']}, {clip['fps']} fps, {clip['codec']}) in {windows['count']} windows of "
        f"{windows['seconds']:.0f} s overlapping {windows['overlap']:.0f} s, each sampled at "
        f"{windows['fps']} fps, at most {windows['max_frames']} frames; each way run "
        f"{result['rounds']} times in a fresh process, interleaved (load average "
        f"{result['machine']['load_avg_1m']}). Memory: {result['memory_measure']}. "
        "`one_pass` is the op with `window_seconds`; `separate_clips` decodes the windows cut "
        "beforehand into files (the cutting, a re-encode, not counted); `per_window` decodes the "
        "whole file once per window (`video_start`/`video_end`).", "",
        markdown_table(rows, [("way", "way"), ("wall", "wall s (median)"),
                              ("cpu", "CPU s (median)"), ("rss", "peak RSS MiB"),
                              ("frames", "frames")]),
        "",
        "Wall time over one_pass's, per round (median, min-max): " + ", ".join(
            f"{name} {r['median']:.2f} ({r['min']:.2f}-{r['max']:.2f})"
            for name, r in ratios.items()) + ".", "",
        "What this says: on this H.264 clip (keyframes every 250 frames, 32 of 900 frames wanted "
        "per window) every way decodes nearly every frame, so one pass saves little decoding "
        "time: the CPU seconds are close, and the wall times are the loaded machine's. What it "
        "saves is cutting the video into clips (a re-encode, not counted here) and a pass per "
        "window over the file. Its memory is a window's: the pass hands each window over as soon "
        "as it is decoded and keeps only the frames the next window shares (peak RSS "
        f"{variants['one_pass']['peak_rss_mib']:.0f} vs "
        f"{variants['separate_clips']['peak_rss_mib']:.0f} MiB decoding window by window; "
        "327 MiB when the pass held every window's frames at once, before windows were "
        "streamed). In the op the decoding worker waits for each window to be taken before "
        "decoding the next, and the op holds `generation_batch_size` windows being captioned "
        "plus the next one (tests/test_windows_memory.py: the same peak for 4 as for 16 "
        "windows).",
        ""])
def _quality_gate_section(gate: dict) -> str:
    """The quality gate's cost when nothing is retried (``bench/quality_gate.py``)."""
    work = gate["workload"]
    return "\n".join([
        "## Quality gate overhead", "",
        f"`python -m bench.quality_gate`: {work['requests']} unseen videos per round, "
        f"{work['rounds']} rounds, caption_num {work['caption_num']}, {work['new_tokens']} "
        "tokens, greedy, the op with its default gate (every candidate checked, flags recorded, "
        "max_retries 0) and with no gate at all (load average "
        f"{gate['load_avg_1m_during']} during the run).", "",
        f"- Time spent inside the gate (checks, bookkeeping, provenance fields): "
        f"{gate['gate_own_seconds']} s of {gate['seconds']['gate']} s, "
        f"**{100 * gate['gate_own_share_of_op']:.3f}%** of the op's time (target: at most "
        f"{100 * gate['target_share']:.0f}%); "
        f"{100 * gate['gate_own_seconds'] / gate['op_cpu_seconds']['gate']:.2f}% of the op "
        "process's CPU seconds.",
        f"- The op process's CPU seconds with / without the gate: "
        f"{gate['gate_over_off_op_cpu']} (per round {gate['gate_over_off_op_cpu_per_round']}).",
        f"- Wall time with / without: {gate['gate_over_off_wall']} (per round "
        f"{gate['gate_over_off_wall_per_round']}): on a loaded machine this spread is the "
        "machine's, not the gate's.", ""])


def _vllm_cpu_section(result: dict) -> str:
    """The op on vLLM's CPU engine against the engine alone and decoding alone
    (``bench/vllm_cpu.py``, run from ``.venv-vllm``)."""
    vllm = result["vllm"]
    work = vllm["workload"]
    seconds, cpu = vllm["seconds"], vllm["cpu_seconds"]
    check = vllm.get("load") or load_check([vllm["load_avg_1m_during"]], vllm["cores"])
    lines = [
        "## vLLM's CPU engine (vllm-cpu 0.32)", "",
        f"`.venv-vllm/bin/python -m bench.vllm_cpu`: {vllm['videos']} videos (the sample clips "
        f"under distinct paths), caption_num {work['caption_num']}, exactly "
        f"{work['new_tokens']} tokens per caption, `generation_batch_size` "
        f"{work['generation_batch_size']}, the tiny Qwen3-VL with text head_dim 32, float32, "
        f"the op's default frames ({vllm['frames_per_video']} frames per video on average), "
        f"{vllm['cores']} cores, in one process (load average {result['load_avg_1m_before']} "
        f"before, {vllm['load_avg_1m_during']} during). CPU-seconds include the engine's and the "
        "decoders' processes.", "",
        "| mode | wall s | CPU-s |", "|---|---|---|",
        f"| op (`backend: vllm`, continuous feeding) | {seconds['op']} | {cpu['op']} |",
        f"| engine alone (all requests pre-decoded, one `generate` call) | {seconds['engine']} "
        f"| {cpu['engine']} |",
        f"| decoding alone (one process) | {seconds['decode']} | {cpu['decode']} |", "",
        f"Target: 1.1 x (decode + engine CPU-s) / cores = **{vllm['target_seconds']} s**; the "
        f"op took **{vllm['op_over_target']} x** the target "
        f"({vllm['op_over_engine_alone']} x the engine alone, {vllm['op_over_decode_alone']} x "
        f"decoding alone); {publish_note(check)}."]
    server = result.get("openai_server")
    if server:
        lines += ["", f"`backend: openai` against `python -m vllm.entrypoints.openai.api_server` "
                      f"on loopback, same videos: {server['seconds']} s wall "
                      f"({server['op_openai_over_target']} x the in-process target); client "
                      f"{server['client_cpu_seconds']} CPU-s, server "
                      f"{server['server_cpu_seconds']} CPU-s."]
    return "\n".join(lines) + "\n"


def scenario_load(scenario: dict, machine: dict) -> dict:
    """A scenario's load check (:func:`bench.measure.load_check`); results saved before it
    was recorded are judged by their mean load."""
    if "load" in scenario:
        return scenario["load"]
    return load_check([scenario["load_avg_1m_during"]], machine["cpus"])


def _summary(results: dict[str, dict]) -> str:
    """One line per scenario and thread setting: the ratios that count, or why they may not
    be quoted (measured on a busy machine)."""
    lines = ["## Summary", "", "Same-process ratios (op over the sequential baseline, wall time; "
             "CPU-time ratio in brackets; against a baseline that decoded before every "
             "`generate` call), and the op's time over the decode floor, with the load average "
             "they were measured at:", ""]
    for title, result in results.items():
        for name, scenario in result["scenarios"].items():
            check = scenario_load(scenario, result["machine"])
            if not check["publishable"]:
                lines.append(f"- {title}, {name}: {publish_note(check)}")
                continue
            lines.append(
                f"- {title}, {name}: **{scenario['speedup_vs_baseline']}x** "
                f"({scenario['cpu_time_ratio_vs_baseline']}x; decode per call "
                f"{scenario['speedup_if_baseline_decoded_per_call']}x); op time / decode floor "
                f"{scenario['op_time_over_decode_floor']}; {publish_note(check)}")
    return "\n".join(lines) + "\n"


HAND_WRITTEN = "<!-- written by hand below: kept by bench.report -->"


def write_doc() -> Path:
    throughput = load("throughput")
    scaling = load("scaling")
    figure = plot(throughput, scaling)
    runs = {title: result for name, title in THROUGHPUT_TITLES.items()
            if (result := load(name)) is not None}
    parts = ["# Performance", "", "Generated by `python -m bench.report`; do not edit by hand.",
             "", _summary(runs), f"![benchmarks](../{figure.relative_to(ROOT)})", "", METHOD]
    parts += [_throughput_section(title, result) for title, result in runs.items()]
    if throughput:
        parts.append(_builtin_section(throughput))
    if scaling:
        parts.append(_scaling_section(scaling))
    if store := load("store_overhead"):
        parts.append(_store_section(store))
    if gate := load("quality_gate"):
        parts.append(_quality_gate_section(gate))
    if vllm_cpu := load("vllm_cpu"):
        parts.append(_vllm_cpu_section(vllm_cpu))
    if long_video := load("long_video"):
        parts.append(_long_video_section(long_video))
    if (decode := load("decode")) and reads_section(decode):
        parts.append(reads_section(decode))
    if ray := load("ray_scaling"):
        from bench.ray_scaling import report_section

        parts.append(report_section(ray))
    if run_report := load("report_overhead"):
        parts.append(_run_report_section(run_report))
    parts += [_gpu_section(load("gpu")), PROFILE]
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text("\n".join(parts) + kept_by_hand(DOC))
    return DOC


def kept_by_hand(doc: Path) -> str:
    """The page's hand-written tail (from :data:`HAND_WRITTEN` on), kept when it is rewritten:
    sections whose figures come from runs in other environments (the vLLM venv)."""
    text = doc.read_text() if doc.exists() else ""
    at = text.find(HAND_WRITTEN)
    return "" if at < 0 else "\n" + text[at:]


def run_benchmarks(requests: int | None) -> None:
    python = [sys.executable, "-m"]
    sizes = ["--requests", str(requests)] if requests else []
    for name, extra in THROUGHPUT_RUNS.items():
        subprocess.run([*python, "bench.throughput", *sizes, "--save", name, *extra], cwd=ROOT,
                       check=True)
    subprocess.run([*python, "bench.scaling"], cwd=ROOT, check=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-run", action="store_true", help="only rewrite plot and page")
    parser.add_argument("--requests", type=int, help="videos per scenario (default: its own)")
    args = parser.parse_args(argv)
    if not args.no_run:
        run_benchmarks(args.requests)
    print(f"wrote {write_doc()} and {RESULTS_DIR / 'performance.png'}")


if __name__ == "__main__":
    main()
