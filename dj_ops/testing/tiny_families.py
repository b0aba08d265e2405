"""Tiny random-weight checkpoints of transformers' other video chat families, built offline.

Each family is one row of :data:`~dj_ops.testing.tiny_family_specs.TINY_FAMILIES`: its model
class, the placeholder its chat template writes for a video, the tokens its processor reads from
the tokenizer, and two builders (the config, the processor with the family's own image and video
processor classes). Everything else
is shared: the Qwen tiny models' byte-level BPE tokenizer (same corpus) with the family's tokens
added, a chat template with the family's placeholder, small vision towers (28-pixel squares where
the tower has a fixed input size), two text layers, and the marker and cache of
:mod:`dj_ops.testing.tiny_models` (built once per cache folder). Processors keep their classes'
defaults except sizes, so that what they do with frames (resize, stack, pad) is the family's.

``tiny_family_path(family)`` builds once into the cache; ``build_tiny_family(family, out_dir)``
builds into a folder. Command line: ``python -m dj_ops.testing.tiny_families --family smolvlm``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from dj_ops.testing.tiny_family_specs import TINY_FAMILIES, TinyFamily, chat_template
from dj_ops.testing.tiny_models import (
    EOS_TOKEN,
    PAD_TOKEN,
    _build_tokenizer,
    _muted_token_ids,
    default_model_dir,
)
from dj_ops.testing.tiny_text import _build_once

BUILDER_VERSION = "families-2"


def _tokenizer(family: TinyFamily):
    """The Qwen tiny tokenizer with the family's tokens and chat template."""
    tokenizer = _build_tokenizer(chat_template(family.video))
    tokenizer.add_tokens(list(family.tokens), special_tokens=True)
    if family.named:
        tokenizer._set_model_specific_special_tokens(special_tokens=dict(family.named))
    return tokenizer


def _model(family: TinyFamily, tokenizer, seed: int):
    """A random-weight model of the family's class; muted ids as in ``tiny_models``."""
    import torch
    import transformers

    ids = tokenizer.convert_tokens_to_ids
    config = family.config(ids, len(tokenizer))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = getattr(transformers, family.model_class)(config).eval()
    muted = _muted_token_ids(tokenizer) + [ids(token) for token in family.tokens]
    with torch.no_grad():
        model.get_output_embeddings().weight[muted] = 0.0
    pad, eos = ids(PAD_TOKEN), ids(EOS_TOKEN)
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=pad, eos_token_id=[eos, pad], pad_token_id=pad, do_sample=False)
    return model


def build_tiny_family(family: str, out_dir: str | os.PathLike, seed: int = 0) -> str:
    """Build ``family``'s tiny checkpoint into ``out_dir`` (once: an earlier complete build of
    the same version, family and seed is kept) and return its path."""
    if family not in TINY_FAMILIES:
        raise ValueError(f"unknown family {family!r}; allowed: {', '.join(sorted(TINY_FAMILIES))}")
    marker = {"builder_version": BUILDER_VERSION, "family": family, "seed": seed}
    spec = TINY_FAMILIES[family]

    def write(folder: Path) -> None:
        tokenizer = _tokenizer(spec)
        spec.processor(tokenizer, chat_template(spec.video)).save_pretrained(folder)
        _model(spec, tokenizer, seed).save_pretrained(folder)

    return _build_once(out_dir, marker, write)  # built once, renamed into place


def tiny_family_path(family: str) -> str:
    """Path of the cached tiny ``family`` checkpoint (seed 0), built on first use."""
    return build_tiny_family(family, default_model_dir(family))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", required=True, choices=sorted(TINY_FAMILIES))
    parser.add_argument("--out", help="output folder (default: the cache)")
    args = parser.parse_args(argv)
    print(build_tiny_family(args.family, args.out or default_model_dir(args.family)))


if __name__ == "__main__":
    main()
