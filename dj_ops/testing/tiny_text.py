"""Tiny text-only checkpoints for the caption-enhancement op, built offline.

- :func:`build_tiny_text_model`: a random-weight ``Qwen3ForCausalLM`` (a text-only causal LM:
  what ``caption_enhancement_mapper`` may rewrite with instead of the captioning VLM) with the
  tiny Qwen checkpoints' byte-level BPE tokenizer and chat template
  (:mod:`dj_ops.testing.tiny_models`), loadable through ``AutoTokenizer`` and
  ``AutoModelForCausalLM``;
- :func:`build_t5_like_tokenizer`: a small Unigram (SentencePiece-style, ``▁`` word markers, an
  ``</s>`` appended, no byte fallback: unknown characters become ``<unk>``) tokenizer of the
  kind T5 and CogVideoX's text encoder use, trained on a small corpus and saved as a
  ``T5Tokenizer``: the target tokenizer of the length-bounded preset in tests (T5's own cannot be
  downloaded here).

Both are deterministic and take about a second. Command line:
``python -m dj_ops.testing.tiny_text --out DIR [--head-dim 32] [--tokenizer-out DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import uuid
from pathlib import Path

from dj_ops.testing.tiny_models import (
    _CHAT_TEMPLATE,
    _SYSTEM_SLOT,
    CORPUS,
    DEFAULT_HEAD_DIM,
    EOS_TOKEN,
    INITIALIZER_RANGE,
    MARKER_FILE,
    PAD_TOKEN,
    TEXT_HEADS,
    TEXT_KV_HEADS,
    TEXT_LAYERS,
    _build_tokenizer,
    _clear_for_replacement,
    _muted_token_ids,
    _progress_bars_off,
    _read_marker,
)

TEXT_BUILDER_VERSION = "1"
T5_LIKE_VOCAB_SIZE = 400  # what the corpus yields is smaller; the trainer stops there
T5_SPECIALS = ("<pad>", "</s>", "<unk>")
# A little more text than the captioning corpus, so that common words are whole pieces.
T5_CORPUS = CORPUS + """\
A woman in a red coat walks her dog through a quiet park in the morning light.
Close-up of a hand pouring coffee into a white cup on a wooden table.
The camera slowly tracks a cyclist riding along a coastal road at golden hour.
Aerial view of a green forest, a river winding between the hills.
"""


def _text_model(tokenizer, seed: int, head_dim: int):
    """A random-weight ``Qwen3ForCausalLM`` with ``tokenizer``'s ids (seeded, RNG restored)."""
    import torch
    import transformers

    ids = tokenizer.convert_tokens_to_ids
    pad_id, eos_id = ids(PAD_TOKEN), ids(EOS_TOKEN)
    hidden = TEXT_HEADS * head_dim
    config = transformers.Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=TEXT_LAYERS, num_attention_heads=TEXT_HEADS,
        num_key_value_heads=TEXT_KV_HEADS, head_dim=head_dim, max_position_embeddings=4096,
        initializer_range=INITIALIZER_RANGE, tie_word_embeddings=False,
        bos_token_id=pad_id, eos_token_id=eos_id, pad_token_id=pad_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.Qwen3ForCausalLM(config).eval()
    with torch.no_grad():  # as the tiny VLMs: words, never single bytes or special tokens
        model.lm_head.weight[_muted_token_ids(tokenizer)] = 0.0
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=pad_id, eos_token_id=[eos_id, pad_id], pad_token_id=pad_id, do_sample=False)
    return model


def _build_once(out_dir: str | os.PathLike, marker: dict, write) -> str:
    """``write(folder)`` into a sibling temporary folder renamed into place (concurrent builders
    never expose a half-written one); at once when ``out_dir`` holds the build ``marker``
    describes."""
    out_dir = Path(out_dir).expanduser().absolute()
    if _read_marker(out_dir) == marker:
        return str(out_dir)
    _clear_for_replacement(out_dir, marker)
    tmp_dir = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        tmp_dir.mkdir(parents=True)
        with _progress_bars_off():
            write(tmp_dir)
        (tmp_dir / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
        os.rename(tmp_dir, out_dir)
    except OSError:
        if _read_marker(out_dir) != marker:  # else another process finished first
            raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return str(out_dir)


def build_tiny_text_model(out_dir: str | os.PathLike, seed: int = 0,
                          head_dim: int = DEFAULT_HEAD_DIM) -> str:
    """A tiny random-weight text-only causal LM (``Qwen3ForCausalLM``) in ``out_dir``; its path.

    :param head_dim: the attention's head size; vLLM's CPU engine needs 32 or more.
    """
    marker = {"builder_version": TEXT_BUILDER_VERSION, "family": "qwen3_text", "seed": seed,
              "head_dim": head_dim}

    def write(folder: Path) -> None:
        tokenizer = _build_tokenizer(_CHAT_TEMPLATE.replace(_SYSTEM_SLOT, ""))
        tokenizer.save_pretrained(folder)
        _text_model(tokenizer, seed, head_dim).save_pretrained(folder)

    return _build_once(out_dir, marker, write)


def build_t5_like_tokenizer(out_dir: str | os.PathLike) -> str:
    """A small SentencePiece-style Unigram tokenizer saved as a ``T5Tokenizer`` in ``out_dir``
    (loads through ``AutoTokenizer.from_pretrained``); its path."""
    marker = {"builder_version": TEXT_BUILDER_VERSION, "family": "t5_like_tokenizer"}

    def write(folder: Path) -> None:
        import transformers
        from tokenizers import (
            Tokenizer,
            decoders,
            models,
            normalizers,
            pre_tokenizers,
            processors,
            trainers,
        )

        unigram = Tokenizer(models.Unigram())
        unigram.normalizer = normalizers.Sequence([normalizers.NFKC(),
                                                   normalizers.Replace(" {2,}", " ")])
        unigram.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        unigram.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        trainer = trainers.UnigramTrainer(vocab_size=T5_LIKE_VOCAB_SIZE,
                                          special_tokens=list(T5_SPECIALS), unk_token="<unk>",
                                          show_progress=False)
        unigram.train_from_iterator(T5_CORPUS.splitlines(), trainer)
        eos = unigram.token_to_id("</s>")
        unigram.post_processor = processors.TemplateProcessing(
            single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos)])
        tokenizer = transformers.T5TokenizerFast(
            tokenizer_object=unigram, extra_ids=0, pad_token="<pad>", eos_token="</s>",
            unk_token="<unk>")
        tokenizer.save_pretrained(folder)

    return _build_once(out_dir, marker, write)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the text model's folder")
    parser.add_argument("--head-dim", type=int, default=DEFAULT_HEAD_DIM)
    parser.add_argument("--tokenizer-out", help="also build the T5-like tokenizer here")
    args = parser.parse_args(argv)
    print(build_tiny_text_model(args.out, head_dim=args.head_dim))
    if args.tokenizer_out:
        print(build_t5_like_tokenizer(args.tokenizer_out))


if __name__ == "__main__":
    main()
