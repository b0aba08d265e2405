"""Run Data-Juicer's own ``video_captioning_from_vlm_mapper`` (1.6.1) on one video and record
how it fails, so the benchmark can say why it is not in the speed table.

Two attempts, both on the tiny model and a real clip:

1. ``process_batched`` on one sample, as the op ships: the processor decodes the video (with
   torchcodec, when it is usable), then ``generate`` receives ``max_new_tokens`` twice (the op
   passes ``max_new_tokens=128`` and its ``sampling_params``, into which Data-Juicer's
   ``update_sampling_params`` always puts ``max_new_tokens``): ``TypeError``. Through
   Data-Juicer's wrapper with ``skip_op_error`` on (``dj-process``'s default) the error is
   logged and the batch comes back empty.
2. ``process_batched`` on a sample without videos (nothing to generate): the op returns ``{}``
   whenever it has output rows (``if len(samples_after_generation) > 0: return res_samples``
   before filling it): the kept original is lost.
"""

from __future__ import annotations

from typing import Any

from data_juicer.utils.mm_utils import SpecialTokens

from dj_ops.captioning.samples import as_columns, one_video_sample

BUILTIN_OP = "video_captioning_from_vlm_mapper"


def _outcome(call) -> dict[str, Any]:
    """``call()``'s result summary, or the exception it raised."""
    try:
        result = call()
    except Exception as error:  # noqa: BLE001 - recording any failure is the point
        return {"ok": False, "error": f"{type(error).__name__}: {error}"[:300]}
    rows = len(next(iter(result.values()), [])) if result else 0
    return {"ok": bool(rows), "returned_rows": rows, "returned_keys": sorted(result or {})}


def try_builtin_op(model: str, video: str) -> dict[str, Any]:
    """Run the built-in op the ways described in the module docstring; report each outcome."""
    from data_juicer.ops.mapper.video_captioning_from_vlm_mapper import (
        VideoCaptioningFromVLMMapper,
    )
    from transformers.utils.import_utils import is_torchcodec_usable

    params = {"hf_model": model, "caption_num": 1, "sampling_params": {"max_new_tokens": 8}}
    op = VideoCaptioningFromVLMMapper(**params)
    # dj-process turns skip_op_error on by default (its config); built from Python it is off.
    as_in_dj_process = VideoCaptioningFromVLMMapper(**params, skip_op_error=True)
    one_video = as_columns([one_video_sample(video, SpecialTokens.video, SpecialTokens.eoc)])
    no_video = {"text": ["a sample without videos"], "videos": [[]]}
    return {
        "op": BUILTIN_OP,
        "torchcodec_usable": is_torchcodec_usable("video"),
        "attempts": {
            "process_batched, one video": _outcome(lambda: op.process_batched(dict(one_video))),
            "op.process with skip_op_error (as in dj-process), one video":
                _outcome(lambda: as_in_dj_process.process(dict(one_video))),
            "process_batched, no video, keep_original_sample": _outcome(
                lambda: op.process_batched(dict(no_video))),
        },
    }  # fmt: skip


if __name__ == "__main__":
    import json

    from dj_ops.testing.clips import sample_videos
    from dj_ops.testing.tiny_models import tiny_model_path

    report = try_builtin_op(tiny_model_path("qwen3_vl"), str(sample_videos()[0]))
    print(json.dumps(report, indent=2))
