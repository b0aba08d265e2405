"""What ``caption_format: json`` costs per backend: tokens per second with and without the
schema, in one process, rounds interleaved so that the machine's load hits every mode alike.

- ``transformers`` (through the op, ``vlm_video_captioning_mapper`` on one batch of the sample
  videos, one greedy candidate each): ``text`` (free text, exactly ``--free-tokens`` tokens per
  caption, fast decoding ``auto``: the default), ``text_plain`` (the same with
  ``fast_decoding: off``: plain ``generate``, the path json mode takes) and ``json`` (the
  default schema, until the document ends). Tokens are the records' ``generated_tokens``;
  CPU time is this process's (the op's decoders run in its children and are not counted in
  the generation modes' difference, as every mode decodes the same videos).
- ``vllm`` (the in-process CPU engine from ``.venv-vllm``, one engine built with the guidance
  structured-outputs backend): the backend's ``generate`` on the decoded videos with and
  without ``structured_outputs`` in its ``SamplingParams``; CPU time is this process's and its
  engine's.

The tiny random-weight Qwen3-VL's step is far cheaper than a real model's and its vocabulary
far smaller (519 tokens, Qwen's 151k): the ratios are the worst case for the model's share.

``python -m bench.structured_captions [--backend transformers|vllm] [--rounds R]``
Results: ``bench/results/structured_captions_<backend>.json``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import psutil

from bench.measure import load_check, load_now, publish_note, rate, save, spread
from bench.vllm_cpu import tree_cpu_seconds
from dj_ops.captioning.records import META_KEY
from dj_ops.captioning.structured import DEFAULT_SCHEMA, validation_error
from dj_ops.testing.clips import sample_videos
from dj_ops.testing.tiny_models import VLLM_HEAD_DIM, build_tiny_model

FRAMES = {"max_frames": 4, "min_frames": 2, "max_pixels": 112 * 112, "min_pixels": 28 * 28}
JSON_MAX_TOKENS = 2000


def timed_tokens(run, counts: dict, key: str, self_only: bool) -> float:
    """Run ``run`` (returning (tokens, valid documents, documents)), add its figures to
    ``counts[key]``; returns its tokens per CPU second."""
    start_wall = time.perf_counter()
    start_cpu = time.process_time() if self_only else tree_cpu_seconds(psutil.Process())
    tokens, valid, documents = run()
    cpu = (time.process_time() if self_only else tree_cpu_seconds(psutil.Process())) - start_cpu
    entry = counts.setdefault(key, {"tokens": 0, "cpu_s": 0.0, "wall_s": 0.0, "valid": 0,
                                    "documents": 0})
    entry["tokens"] += tokens
    entry["cpu_s"] += cpu
    entry["wall_s"] += time.perf_counter() - start_wall
    entry["valid"] += valid
    entry["documents"] += documents
    return rate(tokens, cpu)


def summarise(counts: dict, ratios: dict[tuple[str, str], list[float]]) -> dict:
    """Each mode's totals and rates, and its per-round ratios to its baseline
    (``ratios[(mode, baseline)]``)."""
    modes = {}
    for key, entry in counts.items():
        modes[key] = {**entry, "tokens_per_cpu_s": rate(entry["tokens"], entry["cpu_s"]),
                      "tokens_per_wall_s": rate(entry["tokens"], entry["wall_s"])}
    for (key, baseline), values in ratios.items():
        modes[key][f"ratio_to_{baseline}_cpu"] = spread(values)
    return modes


def transformers_modes(folder: Path, free_tokens: int) -> dict:
    from dj_ops.ops import VLMVideoCaptioningMapper

    model = build_tiny_model("qwen3_vl", folder / "qwen3_vl")
    free = {"max_new_tokens": free_tokens, "min_new_tokens": free_tokens}
    common = {"hf_model": model, **FRAMES, "seed": 0, "keep_original_sample": False,
              "decode_workers": 0, "torch_threads": 1}
    return {
        "text": VLMVideoCaptioningMapper(**common, sampling_params=free),
        "text_plain": VLMVideoCaptioningMapper(**common, sampling_params=free,
                                               fast_decoding="off"),
        "json": VLMVideoCaptioningMapper(**common, caption_format="json",
                                         sampling_params={"max_new_tokens": JSON_MAX_TOKENS}),
    }


def op_run(op, batch: dict):
    def run():
        out = op.process_batched(dict(batch))
        records = [meta[META_KEY] for meta in out["__dj__meta__"]]
        videos = [v for r in records for v in r["videos"]]
        documents = [v["caption_json"] for v in videos if "caption_json" in v]
        valid = sum(validation_error(d, DEFAULT_SCHEMA) is None for d in documents)
        return sum(v["generated_tokens"] for v in videos), valid, len(documents)
    return run


def measure_transformers(rounds: int, free_tokens: int, folder: Path) -> dict:
    ops = transformers_modes(folder, free_tokens)
    videos = [str(v) for v in sample_videos()]
    batch = {"text": ["<__dj__video>"] * len(videos), "videos": [[v] for v in videos]}
    for op in ops.values():  # load the model, the decoders and the grammar outside the clock
        op.process_batched(dict(batch))
    counts: dict = {}
    ratios: dict = {("json", "text_plain"): [], ("text_plain", "text"): []}
    for _ in range(rounds):
        rates = {key: timed_tokens(op_run(op, batch), counts, key, self_only=True)
                 for key, op in ops.items()}
        for mode, baseline in ratios:
            ratios[(mode, baseline)].append(rates[mode] / rates[baseline])
    for op in ops.values():
        op.close()
    return {"backend": "transformers", "rounds": rounds, "videos": len(videos),
            "free_tokens": free_tokens,
            "modes": summarise(counts, ratios)}


def measure_vllm(rounds: int, free_tokens: int, folder: Path) -> dict:
    import vllm

    from dj_ops.backends.base import BackendConfig, CaptionRequest
    from dj_ops.backends.vllm_backend import VLLMBackend, _final_only
    from dj_ops.backends.vllm_requests import sampling_kwargs
    from dj_ops.captioning.generation import parse_sampling_params
    from dj_ops.video import FrameSettings, decode_video
    from tests.vllm_support import ENGINE, SIZE_FACTOR

    model = build_tiny_model("qwen3_vl", folder / "qwen3_vl", head_dim=VLLM_HEAD_DIM)
    frames = FrameSettings(**FRAMES, size_factor=SIZE_FACTOR["qwen3_vl"])
    settings = parse_sampling_params({"max_new_tokens": JSON_MAX_TOKENS}, 1)
    config = BackendConfig(model, settings, seed=0, model_params=dict(ENGINE),
                           frame_settings=frames, json_schema=DEFAULT_SCHEMA)
    backend = VLLMBackend(config)
    free_config = replace(config, json_schema=None, settings=parse_sampling_params(
        {"max_new_tokens": free_tokens, "min_new_tokens": free_tokens}, 1))
    params = {"json": backend.sampling_params,
              "text": _final_only(vllm.SamplingParams(**sampling_kwargs(free_config, False)))}
    decoded = [decode_video(str(v), frames) for v in sample_videos()]
    requests = [CaptionRequest(d.frames, d.transformers_metadata(), "Describe the video.")
                for d in decoded]

    def run(mode):
        def go():
            backend.sampling_params = params[mode]
            candidates = [c for r in backend.generate(requests) for c in r.candidates]
            valid = sum(validation_error(c.text, DEFAULT_SCHEMA) is None for c in candidates)
            return (sum(c.num_tokens for c in candidates), valid if mode == "json" else 0,
                    len(candidates) if mode == "json" else 0)
        return go

    run("text")()  # warm up both
    run("json")()
    counts: dict = {}
    ratios: dict = {("json", "text"): []}
    for _ in range(rounds):
        rates = {mode: timed_tokens(run(mode), counts, mode, self_only=False)
                 for mode in ("text", "json")}
        ratios[("json", "text")].append(rates["json"] / rates["text"])
    backend.shut_down()
    return {"backend": "vllm", "rounds": rounds, "videos": len(requests),
            "free_tokens": free_tokens, "modes": summarise(counts, ratios)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=("transformers", "vllm"), default="transformers")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--free-tokens", type=int, default=400)
    args = parser.parse_args(argv)
    measure = measure_transformers if args.backend == "transformers" else measure_vllm
    loads = [load_now()]
    with tempfile.TemporaryDirectory() as folder:
        result = measure(args.rounds, args.free_tokens, Path(folder))
    result["load"] = load_check([*loads, load_now()])  # before and after: beside the ratios
    path = save(f"structured_captions_{args.backend}", result)
    for mode, entry in result["modes"].items():
        ratio = {k: v for k, v in entry.items() if k.startswith("ratio")}
        print(f"{mode:>10}: {entry['tokens_per_cpu_s']:7.1f} tokens/CPU-s, "
              f"{entry['tokens_per_wall_s']:7.1f} tokens/wall-s, valid "
              f"{entry['valid']}/{entry['documents']} {ratio}")
    print(publish_note(result["load"]))
    print(f"saved {path}")
    return result


if __name__ == "__main__":
    main()
