"""What JSON-schema constrained decoding costs the transformers backend, and how valid it is.

The tiny random-weight Qwen3-VL decodes the sample videos, one sampled candidate per
``generate`` call, in three modes, rounds interleaved so that the machine's load hits all alike:

- ``free``: no constraint, exactly ``--free-tokens`` tokens (the baseline);
- ``llguidance`` and ``xgrammar``: under the default caption schema (dj_ops.backends.grammar),
  until the document ends.

Printed and saved (``bench/results/constrained_decoding.json``): tokens per CPU second and per
wall second of each mode, their ratio to ``free``, the grammar's own milliseconds per token,
and the share of documents that are strictly valid JSON under the schema, and that are valid
when read leniently (raw control characters allowed in strings).

The tiny model's step is far cheaper than a real model's, and its vocabulary (519 tokens) far
smaller than Qwen's (151k): the ratio is the worst case for the model's share, and the
milliseconds per token are what the mask adds (they grow with the vocabulary).

``python -m bench.constrained_decoding [--rounds R] [--free-tokens N]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from bench.measure import load_check, load_now, publish_note, rate, save, spread, stopwatch
from dj_ops.backends.base import BackendConfig, CaptionRequest
from dj_ops.backends.grammar import compile_json_schema, json_logits_processors
from dj_ops.backends.transformers_backend import TransformersBackend
from dj_ops.captioning.generation import parse_sampling_params
from dj_ops.captioning.structured import DEFAULT_SCHEMA, validation_error
from dj_ops.ops.cpu_threads import intra_op_threads
from dj_ops.testing.clips import sample_videos
from dj_ops.testing.tiny_models import build_tiny_model
from dj_ops.video import FrameSettings, decode_video

LIBRARIES = ("llguidance", "xgrammar")
MAX_TOKENS = 2000


def load(folder: Path) -> tuple[TransformersBackend, list[CaptionRequest]]:
    model = build_tiny_model("qwen3_vl", folder / "qwen3_vl")
    settings = parse_sampling_params(
        {"max_new_tokens": MAX_TOKENS, "do_sample": True, "temperature": 1.0}, 1)
    backend = TransformersBackend(BackendConfig(model=model, settings=settings, num_candidates=1,
                                                batch_size=1, seed=0))
    frames = FrameSettings(size_factor=backend.size_factor, max_frames=4, min_frames=2,
                           max_pixels=112 * 112, min_pixels=28 * 28)
    decoded = [decode_video(str(v), frames) for v in sample_videos()]
    return backend, [CaptionRequest(d.frames, d.transformers_metadata(), "Describe.")
                     for d in decoded]


def generate(backend, inputs, **kwargs) -> list[int]:
    """The new tokens of one candidate, up to its stop token."""
    with torch.inference_mode(), intra_op_threads(1):
        output = backend.model.generate(**inputs, **{**backend.generate_kwargs, **kwargs})
    row = output[0, inputs["input_ids"].shape[1]:].tolist()
    ends = [i for i, t in enumerate(row) if t in backend.eos_ids]
    return row[: ends[0]] if ends else row


def measure(rounds: int, free_tokens: int, folder: Path) -> dict:
    backend, requests = load(folder)
    vocab = backend.model.config.get_text_config().vocab_size
    grammars = {lib: compile_json_schema(backend.tokenizer, vocab, DEFAULT_SCHEMA,
                                         sorted(backend.eos_ids), lib) for lib in LIBRARIES}
    inputs = [backend.encode([r]) for r in requests]
    modes = ("free", *LIBRARIES)
    tokens = dict.fromkeys(modes, 0)
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    per_round: dict[str, list[float]] = {lib: [] for lib in LIBRARIES}
    valid: dict[str, dict] = {lib: {"strict": 0, "lenient": 0, "documents": 0}
                              for lib in LIBRARIES}
    torch.manual_seed(0)
    for _ in range(rounds):
        round_rate = {}
        for mode in modes:
            before_t, before_c = tokens[mode], cpu.get(mode, 0.0)
            for one in inputs:
                with stopwatch(wall, cpu, mode):
                    if mode == "free":
                        ids = generate(backend, one, max_new_tokens=free_tokens,
                                       min_new_tokens=free_tokens)
                    else:
                        ids = generate(backend, one,
                                       logits_processor=json_logits_processors(grammars[mode]))
                tokens[mode] += len(ids)
                if mode != "free":
                    text = backend.tokenizer.decode(ids, skip_special_tokens=True)
                    count_validity(valid[mode], text)
            round_rate[mode] = rate(tokens[mode] - before_t, cpu[mode] - before_c)
        for lib in LIBRARIES:
            per_round[lib].append(round_rate[lib] / round_rate["free"])
    result = {"rounds": rounds, "videos": len(inputs), "free_tokens": free_tokens,
              "vocab_size": vocab, "modes": {}}
    for mode in modes:
        entry = {"tokens": tokens[mode], "tokens_per_cpu_s": rate(tokens[mode], cpu[mode]),
                 "tokens_per_wall_s": rate(tokens[mode], wall[mode])}
        if mode != "free":
            entry["ratio_to_free_cpu"] = spread(per_round[mode])
            entry["grammar_ms_per_token"] = 1000 * (cpu[mode] / tokens[mode]
                                                    - cpu["free"] / tokens["free"])
            entry["validity"] = valid[mode]
        result["modes"][mode] = entry
    return result


def count_validity(counts: dict, text: str) -> None:
    """Count ``text`` as a document, strictly valid or not, leniently valid or not; keep the
    first reasons (cut short) why documents were not leniently valid."""
    counts["documents"] += 1
    counts["strict"] += validation_error(text, DEFAULT_SCHEMA) is None
    try:
        error = validation_error(json.dumps(json.loads(text, strict=False)), DEFAULT_SCHEMA)
    except ValueError as parse_error:
        error = f"not JSON even leniently: {parse_error}"
    counts["lenient"] += error is None
    if error is not None and len(counts.setdefault("lenient_errors", [])) < 3:
        counts["lenient_errors"].append(error[:160])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--free-tokens", type=int, default=400)
    args = parser.parse_args()
    loads = [load_now()]
    with tempfile.TemporaryDirectory() as folder:
        result = measure(args.rounds, args.free_tokens, Path(folder))
    result["load"] = load_check([*loads, load_now()])  # before and after: beside the ratios
    path = save("constrained_decoding", result)
    for mode, entry in result["modes"].items():
        line = f"{mode:>10}: {entry['tokens_per_cpu_s']:7.1f} tokens/CPU-s"
        if mode != "free":
            v = entry["validity"]
            line += (f", {entry['ratio_to_free_cpu']['median']:.2f}x free"
                     f", +{entry['grammar_ms_per_token']:.2f} ms/token"
                     f", strictly valid {v['strict']}/{v['documents']}"
                     f", leniently valid {v['lenient']}/{v['documents']}")
        print(line)
    print(publish_note(result["load"]))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
