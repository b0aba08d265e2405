"""Tiny random-weight checkpoints of the real Qwen-VL architectures, built offline.

``build_tiny_model(family, out_dir)`` writes a complete Hugging Face checkpoint (config, weights,
generation config, byte-level BPE tokenizer with the family's special tokens and chat template,
image and video processors) that loads through ``AutoProcessor`` and
``AutoModelForImageTextToText``. It takes a few seconds, needs no network, and is deterministic for
a given seed. ``tiny_model_path(family)`` builds once into a per-user cache and returns the path.

Command line: ``python -m dj_ops.testing.tiny_models --family qwen3_vl --out DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUILDER_VERSION = "1"
MARKER_FILE = "dj_ops_tiny_model.json"
CACHE_ENV_VAR = "DJ_OPS_TINY_MODEL_DIR"
DEFAULT_CACHE_DIR = Path("~/.cache/dj_ops/tiny_models")

BPE_VOCAB_SIZE = 640  # upper bound: 256 byte symbols plus the merges the corpus yields
TEXT_HEADS = 4
TEXT_KV_HEADS = 2
# The text attention's head size; the hidden size is TEXT_HEADS * head_dim. 16 is the smallest
# and fastest; vLLM's CPU attention needs one of its sizes (32 and up: ``VLLM_HEAD_DIM``).
DEFAULT_HEAD_DIM = 16
VLLM_HEAD_DIM = 32
TEXT_LAYERS = 2
VISION_HIDDEN_SIZE = 32
VISION_HEADS = 2
VISION_DEPTH = 2
# Wider than the usual 0.02 so that logits are well apart and greedy decoding does not hinge on
# float rounding (batched and one-at-a-time runs then agree).
INITIALIZER_RANGE = 0.5

# Qwen's special tokens in Qwen's id order, appended after the BPE vocabulary.
SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)  # fmt: skip
PAD_TOKEN, EOS_TOKEN = "<|endoftext|>", "<|im_end|>"

CORPUS = """\
A person walks along a sandy beach at sunset while waves roll onto the shore.
The video shows a red car driving down a busy city street in the rain.
Two children are playing football on a green field next to a school.
A cat jumps onto the kitchen table and knocks over a glass of water.
The camera pans slowly across snowy mountains under a clear blue sky.
A chef chops onions, then stirs a pot of soup on the stove.
A dog runs after a ball, catches it, and brings it back to its owner.
Describe this video. What happens in this video? Summarize the main events.
"""

# Qwen's chat template less its tool-calling branches; Qwen2.5-VL fills the slot with a default
# system prompt, Qwen3-VL has none.
_SYSTEM_SLOT = "{# default system prompt #}"
_CHAT_TEMPLATE = (
    "{%- set image_count = namespace(value=0) -%}{%- set video_count = namespace(value=0) -%}"
    "{%- for message in messages -%}{# default system prompt #}"
    "{{- '<|im_start|>' + message.role + '\\n' -}}"
    "{%- if message.content is string -%}{{- message.content -}}"
    "{%- else -%}{%- for content in message.content -%}"
    "{%- if content.type == 'image' or 'image' in content or 'image_url' in content -%}"
    "{%- set image_count.value = image_count.value + 1 -%}"
    "{%- if add_vision_id -%}Picture {{ image_count.value }}: {% endif -%}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{%- elif content.type == 'video' or 'video' in content -%}"
    "{%- set video_count.value = video_count.value + 1 -%}"
    "{%- if add_vision_id -%}Video {{ video_count.value }}: {% endif -%}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{%- elif 'text' in content -%}{{- content.text -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}{{- '<|im_end|>\\n' -}}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
_QWEN2_5_DEFAULT_SYSTEM = (
    "{%- if loop.first and message.role != 'system' -%}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' -}}{%- endif -%}"
)


@dataclass(frozen=True)
class FamilySpec:
    """What differs between families; classes are named as ``transformers`` exports them."""

    config_class: str
    model_class: str
    processor_class: str
    video_processor_class: str
    rope: dict[str, Any]  # mrope_section at DEFAULT_HEAD_DIM; text_config() scales it
    vision_config: dict[str, Any]  # out_hidden_size comes from the text's hidden size
    pixel_config: dict[str, Any]  # shared by the image and the video processor
    image_size: dict[str, int]  # pixel budgets as in the real checkpoints
    video_size: dict[str, int]  # Qwen3-VL counts it over all frames, Qwen2.5-VL per frame
    chat_template: str
    vision_out_key: str = "out_hidden_size"  # the vision config's key of its output width


_TEXT = {
    "num_hidden_layers": TEXT_LAYERS,
    "num_attention_heads": TEXT_HEADS,
    "num_key_value_heads": TEXT_KV_HEADS,
    "max_position_embeddings": 4096,
    "initializer_range": INITIALIZER_RANGE,
}
_VISION = {
    "depth": VISION_DEPTH,
    "hidden_size": VISION_HIDDEN_SIZE,
    "intermediate_size": 2 * VISION_HIDDEN_SIZE,
    "num_heads": VISION_HEADS,
    "initializer_range": INITIALIZER_RANGE,
}


def text_config(spec: FamilySpec, head_dim: int) -> dict[str, Any]:
    """The family's text config at ``head_dim``: hidden size ``TEXT_HEADS * head_dim``, and the
    family's mrope section (given at ``DEFAULT_HEAD_DIM``) scaled to add up to ``head_dim / 2``.

    >>> text_config(FAMILIES["qwen3_vl"], 32)["rope_parameters"]["mrope_section"]
    [8, 4, 4]
    """
    if head_dim < DEFAULT_HEAD_DIM or head_dim % DEFAULT_HEAD_DIM:
        raise ValueError(f"head_dim must be a multiple of {DEFAULT_HEAD_DIM}, got {head_dim}")
    hidden = TEXT_HEADS * head_dim
    section = [part * head_dim // DEFAULT_HEAD_DIM for part in spec.rope["mrope_section"]]
    return {**_TEXT, "hidden_size": hidden, "intermediate_size": 2 * hidden, "head_dim": head_dim,
            "rope_parameters": {**spec.rope, "mrope_section": section}}


_QWEN2_5_PIXELS = {"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 16384}
_HALF = [0.5, 0.5, 0.5]

FAMILIES: dict[str, FamilySpec] = {
    "qwen2_vl": FamilySpec(
        config_class="Qwen2VLConfig",
        model_class="Qwen2VLForConditionalGeneration",
        processor_class="Qwen2VLProcessor",
        video_processor_class="Qwen2VLVideoProcessor",
        rope={"rope_theta": 1e6, "mrope_section": [2, 3, 3]},
        vision_config={"depth": VISION_DEPTH, "embed_dim": VISION_HIDDEN_SIZE, "mlp_ratio": 2,
                       "num_heads": VISION_HEADS, "patch_size": 14,
                       "initializer_range": INITIALIZER_RANGE},
        pixel_config={"patch_size": 14},
        image_size=_QWEN2_5_PIXELS,
        video_size=_QWEN2_5_PIXELS,
        chat_template=_CHAT_TEMPLATE.replace(_SYSTEM_SLOT, _QWEN2_5_DEFAULT_SYSTEM),
        vision_out_key="hidden_size",
    ),
    "qwen2_5_vl": FamilySpec(
        config_class="Qwen2_5_VLConfig",
        model_class="Qwen2_5_VLForConditionalGeneration",
        processor_class="Qwen2_5_VLProcessor",
        video_processor_class="Qwen2VLVideoProcessor",
        rope={"rope_theta": 1e6, "mrope_section": [2, 3, 3]},
        vision_config={**_VISION, "patch_size": 14, "window_size": 112, "tokens_per_second": 2,
                       "fullatt_block_indexes": [VISION_DEPTH - 1]},
        pixel_config={"patch_size": 14},
        image_size=_QWEN2_5_PIXELS,
        video_size=_QWEN2_5_PIXELS,
        chat_template=_CHAT_TEMPLATE.replace(_SYSTEM_SLOT, _QWEN2_5_DEFAULT_SYSTEM),
    ),
    "qwen3_vl": FamilySpec(
        config_class="Qwen3VLConfig",
        model_class="Qwen3VLForConditionalGeneration",
        processor_class="Qwen3VLProcessor",
        video_processor_class="Qwen3VLVideoProcessor",
        rope={"rope_theta": 5e6, "mrope_section": [4, 2, 2], "mrope_interleaved": True},
        vision_config={**_VISION, "patch_size": 16, "num_position_embeddings": 64,
                       "deepstack_visual_indexes": [0]},
        pixel_config={"patch_size": 16, "image_mean": _HALF, "image_std": _HALF},
        image_size={"shortest_edge": 64 * 32 * 32, "longest_edge": 16384 * 32 * 32},
        video_size={"shortest_edge": 4 * 32 * 32, "longest_edge": 24576 * 32 * 32},
        chat_template=_CHAT_TEMPLATE.replace(_SYSTEM_SLOT, ""),
    ),
}  # fmt: skip


def _build_tokenizer(chat_template: str):
    """Train a byte-level BPE on ``CORPUS`` (Qwen's pre-tokenizer); append the special tokens."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE, initial_alphabet=alphabet, show_progress=False
    )
    bpe.train_from_iterator(CORPUS.splitlines(), trainer)
    trained = json.loads(bpe.to_str())["model"]
    vocab = dict(trained["vocab"])
    vocab.update({token: len(vocab) + i for i, token in enumerate(SPECIAL_TOKENS)})
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[tuple(pair) for pair in trained["merges"]],
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=None,
        extra_special_tokens=[tok for tok in SPECIAL_TOKENS if tok not in (PAD_TOKEN, EOS_TOKEN)],
        model_max_length=32768,
    )
    tokenizer.chat_template = chat_template
    return tokenizer


def _build_processor(spec: FamilySpec, tokenizer):
    """The family's processor: image processor, video processor, tokenizer, chat template."""
    import transformers

    image_processor = transformers.Qwen2VLImageProcessor(size=spec.image_size, **spec.pixel_config)
    video_processor_class = getattr(transformers, spec.video_processor_class)
    video_processor = video_processor_class(size=spec.video_size, **spec.pixel_config)
    processor_class = getattr(transformers, spec.processor_class)
    return processor_class(image_processor, tokenizer, video_processor, spec.chat_template)


def _muted_token_ids(tokenizer) -> list[int]:
    """Ids the random model should never pick: single bytes, and special tokens but EOS.

    Their output-embedding rows are zeroed, so their logits are 0 while the best of the several
    hundred word pieces is positive: generated text is made of words and decodes cleanly.
    """
    muted = [token_id for token, token_id in tokenizer.get_vocab().items() if len(token) == 1]
    specials = [token for token in SPECIAL_TOKENS if token != EOS_TOKEN]
    return sorted(muted + tokenizer.convert_tokens_to_ids(specials))


def _build_model(spec: FamilySpec, tokenizer, seed: int, head_dim: int):
    """A random-weight model of the real class with ``tokenizer``'s ids; seeded, RNG restored."""
    import torch
    import transformers

    ids = tokenizer.convert_tokens_to_ids
    pad_id, eos_id = ids(PAD_TOKEN), ids(EOS_TOKEN)
    text = text_config(spec, head_dim)
    config = getattr(transformers, spec.config_class)(
        text_config={**text, "vocab_size": len(tokenizer), "bos_token_id": pad_id,
                     "eos_token_id": eos_id, "pad_token_id": pad_id},
        vision_config={**spec.vision_config, spec.vision_out_key: text["hidden_size"]},
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = getattr(transformers, spec.model_class)(config).eval()
    with torch.no_grad():
        model.lm_head.weight[_muted_token_ids(tokenizer)] = 0.0
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=pad_id, eos_token_id=[eos_id, pad_id], pad_token_id=pad_id, do_sample=False
    )
    return model


@contextmanager
def _progress_bars_off() -> Iterator[None]:
    """Silence transformers' "Writing model shards" bar, restoring the caller's setting."""
    from transformers.utils import logging

    was_enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            logging.enable_progress_bar()


def _marker(family: str, seed: int, head_dim: int) -> dict[str, Any]:
    """Contents of the marker file that says a checkpoint is complete and how it was built."""
    marker = {"builder_version": BUILDER_VERSION, "family": family, "seed": seed}
    if head_dim != DEFAULT_HEAD_DIM:  # earlier builds (head_dim 16) keep their marker
        marker["head_dim"] = head_dim
    return marker


def _read_marker(out_dir: Path) -> dict[str, Any] | None:
    """The marker in ``out_dir``, or None when absent or unreadable."""
    try:
        return json.loads((out_dir / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return None


def _write_checkpoint(spec: FamilySpec, out_dir: Path, marker: dict[str, Any]) -> None:
    """Build every part of the checkpoint into ``out_dir``; the marker is written last."""
    tokenizer = _build_tokenizer(spec.chat_template)
    with _progress_bars_off():
        _build_processor(spec, tokenizer).save_pretrained(out_dir)
        head_dim = marker.get("head_dim", DEFAULT_HEAD_DIM)
        _build_model(spec, tokenizer, marker["seed"], head_dim).save_pretrained(out_dir)
    (out_dir / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")


def _clear_for_replacement(out_dir: Path, wanted: dict[str, Any]) -> None:
    """Remove another build of ours or an empty folder; refuse to delete anything else."""
    marker = _read_marker(out_dir)
    if not out_dir.exists() or marker == wanted:
        return
    if marker is not None:
        shutil.rmtree(out_dir, ignore_errors=True)
    elif any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty and holds no tiny-model checkpoint")
    else:
        out_dir.rmdir()


def build_tiny_model(family: str, out_dir: str | os.PathLike, seed: int = 0,
                     head_dim: int = DEFAULT_HEAD_DIM) -> str:
    """Build a tiny random-weight checkpoint of ``family`` into ``out_dir`` and return its path.

    Returns at once when ``out_dir`` already holds a complete build of the same builder version,
    family and seed. The checkpoint is written to a sibling temporary folder and renamed into
    place, so concurrent builders never expose a half-written folder.

    :param family: a key of ``FAMILIES`` (``"qwen2_5_vl"``, ``"qwen3_vl"``).
    :param out_dir: folder to create; an existing one must be empty or an earlier build.
    :param seed: seed of the random weights; same seed, same weights.
    :param head_dim: the text attention's head size (a multiple of 16); vLLM's CPU engine needs
        ``VLLM_HEAD_DIM`` or more.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; allowed: {', '.join(sorted(FAMILIES))}")
    out_dir = Path(out_dir).expanduser().absolute()
    wanted = _marker(family, seed, head_dim)
    text_config(FAMILIES[family], head_dim)  # a bad head_dim fails before anything is removed
    if _read_marker(out_dir) == wanted:
        return str(out_dir)
    _clear_for_replacement(out_dir, wanted)
    tmp_dir = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        tmp_dir.mkdir(parents=True)
        _write_checkpoint(FAMILIES[family], tmp_dir, wanted)
        os.rename(tmp_dir, out_dir)
    except OSError:
        if _read_marker(out_dir) != wanted:  # else another process finished first: use its build
            raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return str(out_dir)


def default_model_dir(family: str, head_dim: int = DEFAULT_HEAD_DIM) -> Path:
    """Cache folder of ``family``: ``$DJ_OPS_TINY_MODEL_DIR/<family>`` (``<family>-hd<N>`` for
    another head size), else under ~/.cache."""
    name = family if head_dim == DEFAULT_HEAD_DIM else f"{family}-hd{head_dim}"
    return Path(os.environ.get(CACHE_ENV_VAR) or DEFAULT_CACHE_DIR).expanduser() / name


def tiny_model_path(family: str, head_dim: int = DEFAULT_HEAD_DIM) -> str:
    """Path of the cached tiny ``family`` checkpoint (seed 0), built on first use."""
    return build_tiny_model(family, default_model_dir(family, head_dim), head_dim=head_dim)


def main(argv: list[str] | None = None) -> None:
    """Command line: build one family into ``--out`` (default: the cache) and print the path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", required=True, choices=sorted(FAMILIES))
    parser.add_argument("--out", help="output folder (default: default_model_dir)")
    parser.add_argument("--seed", type=int, default=0, help="weight seed (needs --out)")
    parser.add_argument("--head-dim", type=int, default=DEFAULT_HEAD_DIM,
                        help=f"text head size (vLLM on CPU: {VLLM_HEAD_DIM})")
    args = parser.parse_args(argv)
    if args.out is None and args.seed != 0:
        parser.error("--seed other than 0 needs --out (the cache holds seed 0)")
    out = args.out or default_model_dir(args.family, args.head_dim)
    print(build_tiny_model(args.family, out, args.seed, head_dim=args.head_dim))


if __name__ == "__main__":
    main()
