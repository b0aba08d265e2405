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
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUILDER_VERSION = "1"
MARKER_FILE = "dj_ops_tiny_model.json"
CACHE_ENV_VAR = "DJ_OPS_TINY_MODEL_DIR"
DEFAULT_CACHE_DIR = Path("~/.cache/dj_ops/tiny_models")
DIR_MODE = 0o777  # less the umask; tempfile.mkdtemp would leave 0o700

BPE_VOCAB_SIZE = 640  # 256 byte symbols plus merges learnt from the corpus below
TEXT_HIDDEN_SIZE = 64
TEXT_HEADS = 4  # head_dim 16: mrope sections below add up to 16 / 2
TEXT_KV_HEADS = 2
TEXT_LAYERS = 2
VISION_HIDDEN_SIZE = 32
VISION_HEADS = 2
VISION_DEPTH = 2
# Random weights drawn wider than the usual 0.02 so that logits are well separated: greedy
# decoding then does not hinge on float rounding (batched == one at a time).
INITIALIZER_RANGE = 0.5

# Qwen's special tokens, in Qwen's id order, appended after the BPE vocabulary.
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
People are dancing at a wedding party in a large hall with bright lights.
A man rides a bicycle through a park with tall trees and a small lake.
The clip begins with a close-up of a flower and ends with a wide shot of the garden.
A woman is speaking to the camera about how to repair a wooden chair.
Cars and buses wait at the traffic light, then the light turns green.
A dog runs after a ball, catches it, and brings it back to its owner.
In the first seconds the screen is dark; later a title appears in white text.
Describe this video. What happens in this video? Summarize the main events.
"""

QWEN2_5_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen3-VL's template without its tool-calling and reasoning branches: no default system prompt.
QWEN3_VL_CHAT_TEMPLATE = (
    "{%- set image_count = namespace(value=0) -%}{%- set video_count = namespace(value=0) -%}"
    "{%- for message in messages -%}"
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
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


@dataclass(frozen=True)
class FamilySpec:
    """What differs between families: classes, sub-configs, processor settings, chat template."""

    config_class: type
    model_class: type
    processor_class: type
    video_processor_class: type
    text_config: dict[str, Any]
    vision_config: dict[str, Any]
    image_processor_kwargs: dict[str, Any]
    video_processor_kwargs: dict[str, Any]
    chat_template: str
    extra_config: dict[str, Any] = field(default_factory=dict)


def _common_text_config() -> dict[str, Any]:
    """Text-tower sizes shared by both families."""
    return {
        "hidden_size": TEXT_HIDDEN_SIZE,
        "intermediate_size": 2 * TEXT_HIDDEN_SIZE,
        "num_hidden_layers": TEXT_LAYERS,
        "num_attention_heads": TEXT_HEADS,
        "num_key_value_heads": TEXT_KV_HEADS,
        "max_position_embeddings": 4096,
        "initializer_range": INITIALIZER_RANGE,
    }


def _common_vision_config(patch_size: int) -> dict[str, Any]:
    """Vision-tower sizes shared by both families."""
    return {
        "depth": VISION_DEPTH,
        "hidden_size": VISION_HIDDEN_SIZE,
        "intermediate_size": 2 * VISION_HIDDEN_SIZE,
        "num_heads": VISION_HEADS,
        "patch_size": patch_size,
        "out_hidden_size": TEXT_HIDDEN_SIZE,
        "initializer_range": INITIALIZER_RANGE,
    }


def _qwen2_5_vl_spec() -> FamilySpec:
    """Qwen2.5-VL: 14-pixel patches, window attention, CLIP normalisation, default system prompt."""
    import transformers as tf

    pixels = {"min_pixels": 56 * 56, "max_pixels": 28 * 28 * 16384}  # as in the real checkpoints
    return FamilySpec(
        config_class=tf.Qwen2_5_VLConfig,
        model_class=tf.Qwen2_5_VLForConditionalGeneration,
        processor_class=tf.Qwen2_5_VLProcessor,
        video_processor_class=tf.Qwen2VLVideoProcessor,
        text_config={
            **_common_text_config(),
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
        },
        vision_config={
            **_common_vision_config(patch_size=14),
            "window_size": 112,
            "fullatt_block_indexes": [VISION_DEPTH - 1],
            "tokens_per_second": 2,
        },
        image_processor_kwargs={"patch_size": 14, **pixels},
        video_processor_kwargs={"patch_size": 14, **pixels},
        chat_template=QWEN2_5_VL_CHAT_TEMPLATE,
    )


def _qwen3_vl_spec() -> FamilySpec:
    """Qwen3-VL: 16-pixel patches, deepstack, interleaved mrope, timestamps in the prompt."""
    import transformers as tf

    half = [0.5, 0.5, 0.5]
    return FamilySpec(
        config_class=tf.Qwen3VLConfig,
        model_class=tf.Qwen3VLForConditionalGeneration,
        processor_class=tf.Qwen3VLProcessor,
        video_processor_class=tf.Qwen3VLVideoProcessor,
        text_config={
            **_common_text_config(),
            "head_dim": TEXT_HIDDEN_SIZE // TEXT_HEADS,
            "rope_parameters": {
                "rope_type": "default", "rope_theta": 5e6,
                "mrope_section": [4, 2, 2], "mrope_interleaved": True,
            },
        },  # fmt: skip
        vision_config={
            **_common_vision_config(patch_size=16),
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [0],
        },
        # sizes as in the real checkpoints; the video budget counts all frames together
        image_processor_kwargs={
            "patch_size": 16, "image_mean": half, "image_std": half,
            "size": {"shortest_edge": 64 * 32 * 32, "longest_edge": 16384 * 32 * 32},
        },
        video_processor_kwargs={
            "patch_size": 16, "image_mean": half, "image_std": half,
            "size": {"shortest_edge": 4 * 32 * 32, "longest_edge": 24576 * 32 * 32},
        },  # fmt: skip
        chat_template=QWEN3_VL_CHAT_TEMPLATE,
    )


FAMILIES: dict[str, Callable[[], FamilySpec]] = {
    "qwen2_5_vl": _qwen2_5_vl_spec,
    "qwen3_vl": _qwen3_vl_spec,
}


def family_spec(family: str) -> FamilySpec:
    """Return the spec of ``family``; ``ValueError`` naming the allowed families otherwise."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; allowed: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[family]()


def _build_tokenizer(chat_template: str):
    """Train a byte-level BPE on ``CORPUS`` (Qwen's pre-tokenizer) and append the special tokens."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])  # fmt: skip
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    bpe.train_from_iterator(CORPUS.splitlines(), trainer)
    model_state = json.loads(bpe.to_str())["model"]
    vocab = dict(model_state["vocab"])
    for token in SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[tuple(pair) for pair in model_state["merges"]],
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=None,
        extra_special_tokens=[token for token in SPECIAL_TOKENS if token not in (PAD_TOKEN, EOS_TOKEN)],
        model_max_length=32768,
    )
    tokenizer.chat_template = chat_template
    return tokenizer


def _build_processor(spec: FamilySpec, tokenizer):
    """Image processor, video processor and tokenizer combined into the family's processor."""
    from transformers import Qwen2VLImageProcessor

    return spec.processor_class(
        image_processor=Qwen2VLImageProcessor(**spec.image_processor_kwargs),
        tokenizer=tokenizer,
        video_processor=spec.video_processor_class(**spec.video_processor_kwargs),
        chat_template=spec.chat_template,
    )


def _muted_token_ids(tokenizer) -> list[int]:
    """Ids the random model should never pick: single bytes and special tokens but EOS.

    Their output-embedding rows are zeroed, so their logits are 0 while the best of the several
    hundred word pieces is positive: generated text is made of words and decodes cleanly.
    """
    muted = [token_id for token, token_id in tokenizer.get_vocab().items() if len(token) == 1]
    muted += [tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS if token != EOS_TOKEN]
    return sorted(muted)


def _build_model(spec: FamilySpec, tokenizer, seed: int):
    """Random-weight model of the real class, its ids matching ``tokenizer``; seeded, RNG restored."""
    import torch
    from transformers import GenerationConfig

    ids = tokenizer.convert_tokens_to_ids
    config = spec.config_class(
        text_config={**spec.text_config, "vocab_size": len(tokenizer), "eos_token_id": ids(EOS_TOKEN),
                     "pad_token_id": ids(PAD_TOKEN), "bos_token_id": ids(PAD_TOKEN)},
        vision_config=spec.vision_config,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=False,
        **spec.extra_config,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = spec.model_class(config).eval()
    with torch.no_grad():
        model.lm_head.weight[_muted_token_ids(tokenizer)] = 0.0
    model.generation_config = GenerationConfig(
        bos_token_id=ids(PAD_TOKEN),
        eos_token_id=[ids(EOS_TOKEN), ids(PAD_TOKEN)],
        pad_token_id=ids(PAD_TOKEN),
        do_sample=False,
    )
    return model


def _marker(family: str, seed: int) -> dict[str, Any]:
    """Contents of the marker file that says a checkpoint is complete and how it was built."""
    return {"builder_version": BUILDER_VERSION, "family": family, "seed": seed}


def _read_marker(out_dir: Path) -> dict[str, Any] | None:
    """The marker in ``out_dir``, or None when absent or unreadable."""
    try:
        return json.loads((out_dir / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return None


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


def _write_checkpoint(family: str, out_dir: Path, seed: int) -> None:
    """Build every part of the checkpoint into ``out_dir``; the marker is written last."""
    spec = family_spec(family)
    tokenizer = _build_tokenizer(spec.chat_template)
    with _progress_bars_off():
        _build_processor(spec, tokenizer).save_pretrained(out_dir)
        _build_model(spec, tokenizer, seed).save_pretrained(out_dir)
    (out_dir / MARKER_FILE).write_text(json.dumps(_marker(family, seed), indent=2) + "\n")


def _clear_for_replacement(out_dir: Path) -> None:
    """Remove a stale build of ours or an empty folder; refuse to delete anything else."""
    if not out_dir.exists():
        return
    if _read_marker(out_dir) is not None:
        shutil.rmtree(out_dir, ignore_errors=True)
    elif any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty and holds no tiny-model checkpoint")
    else:
        out_dir.rmdir()


def build_tiny_model(family: str, out_dir: str | os.PathLike, seed: int = 0) -> str:
    """Build a tiny random-weight checkpoint of ``family`` into ``out_dir`` and return its path.

    Returns at once when ``out_dir`` already holds a complete build of the same builder version,
    family and seed. The checkpoint is written to a sibling temporary folder and renamed into
    place, so concurrent builders never expose a half-written folder.

    :param family: one of ``FAMILIES`` (``"qwen2_5_vl"``, ``"qwen3_vl"``).
    :param out_dir: folder to create; an existing one must be empty or an earlier build.
    :param seed: seed of the random weights; same seed, same weights.
    """
    family_spec(family)  # validate before touching the file system
    out_dir = Path(out_dir).expanduser().absolute()
    if _read_marker(out_dir) == _marker(family, seed):
        return str(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        tmp_dir.chmod(DIR_MODE & ~_umask())
        _write_checkpoint(family, tmp_dir, seed)
        _clear_for_replacement(out_dir)
        os.rename(tmp_dir, out_dir)
    except OSError:
        if _read_marker(out_dir) != _marker(family, seed):
            raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return str(out_dir)


def _umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def tiny_model_path(family: str) -> str:
    """Path of the cached tiny ``family`` checkpoint (seed 0), building it on first use.

    The cache root is ``$DJ_OPS_TINY_MODEL_DIR`` or ``~/.cache/dj_ops/tiny_models``.
    """
    root = Path(os.environ.get(CACHE_ENV_VAR) or DEFAULT_CACHE_DIR).expanduser()
    return build_tiny_model(family, root / family)


def main(argv: list[str] | None = None) -> None:
    """Command line: build one family into ``--out`` (default: the cache) and print the path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", required=True, choices=sorted(FAMILIES))
    parser.add_argument("--out", help="output folder (default: the cache, see tiny_model_path)")
    parser.add_argument("--seed", type=int, default=0, help="weight seed (needs --out)")
    args = parser.parse_args(argv)
    if args.out is None and args.seed != 0:
        parser.error("--seed other than 0 needs --out (the cache holds seed 0)")
    path = build_tiny_model(args.family, args.out, args.seed) if args.out else tiny_model_path(args.family)
    print(path)


if __name__ == "__main__":
    main()
