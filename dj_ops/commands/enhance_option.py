"""``dj-ops-caption --enhance PRESET``: the caption-enhancement op after the captioning op.

The captions go into the ``caption`` field; ``--enhance`` rewrites each into
``caption_enhanced`` with ``caption_enhancement_mapper`` (the original kept), on the same
backend (and server), seed, error policy, worker count and result store as the captioning, with
``--enhance-model`` (default: the captioning model, given text only). Kept apart from the
command's own options so that they stay one small hook there.
"""

from __future__ import annotations

import argparse

from dj_ops.enhancement.presets import PRESETS

# what the enhancement op takes from the captioning op's parameters, when they are set
SHARED = ("seed", "backend", "on_error", "generation_batch_size", "model_params", "num_proc",
          "result_store")


def add_enhance_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--enhance", choices=sorted(PRESETS),
                        help="then rewrite each caption with a text model in this style "
                             "(caption_enhancement_mapper) into 'caption_enhanced', the "
                             "original kept")
    parser.add_argument("--enhance-model", help="the model that rewrites (default: --model)")
    parser.add_argument("--target-tokenizer",
                        help="--enhance video_generation: the tokenizer its length bound counts "
                             "in (default: the preset's, T5's)")


def enhance_params(args: argparse.Namespace, captioning: dict, caption_key: str) -> dict | None:
    """The enhancement op's parameters, None without ``--enhance``.

    :param captioning: the captioning op's parameters (what the two share is taken from it).
    """
    if args.enhance is None:
        return None
    params = {"hf_model": args.enhance_model or args.hf_model, "preset": args.enhance,
              "caption_key": caption_key, **{k: captioning[k] for k in SHARED if k in captioning}}
    if args.target_tokenizer is not None:
        params["target_tokenizer"] = args.target_tokenizer
    return params


def build_enhancement_ops(args: argparse.Namespace, captioning: dict,
                          caption_key: str) -> list:
    """The enhancement op (built: a bad setting fails here, naming the fix), or none."""
    params = enhance_params(args, captioning, caption_key)
    if params is None:
        return []
    from dj_ops.ops.caption_enhancement_mapper import CaptionEnhancementMapper

    return [CaptionEnhancementMapper(**params)]


def enhanced_line(rows: list[dict]) -> str:
    """The enhancement's counts over the output rows."""
    from dj_ops.enhancement.records import ENHANCEMENT_KEY, EnhanceSummary

    summary = EnhanceSummary().add((r.get("__dj__meta__") or {}).get(ENHANCEMENT_KEY)
                                   for r in rows)
    return (f"enhanced: {summary.rewrites} rewrites ({summary.from_store} reused from the "
            f"store, {summary.cut} cut to the length bound), {sum(summary.errors.values())} "
            "failed")
