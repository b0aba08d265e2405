"""The decoding parameters through Data-Juicer's recipe parser and the real ``dj-process``."""

from __future__ import annotations

from data_juicer.utils.constant import Fields
from data_juicer.utils.mm_utils import SpecialTokens

from dj_ops.captioning.records import META_KEY
from tests.conftest import FAST_FRAMES, FAST_SAMPLING
from tests.test_dj_process import run_recipe


def test_recipe_with_decoding_parameters(tmp_path, qwen3, videos):
    samples = [{"text": f"{SpecialTokens.video} clip {i}", "videos": [v]}
               for i, v in enumerate(videos[:3])]
    samples.append({"text": f"{SpecialTokens.video} missing", "videos": ["/no/such/video.mp4"]})
    params = {
        "hf_model": qwen3, "keep_original_sample": False, "seed": 0, **FAST_FRAMES,
        "sampling_params": FAST_SAMPLING, "frame_strategy": "chat", "decoder": "pyav",
        "decode_workers": 2, "decode_timeout": 60.0, "prefetch": True,
        "generation_batch_size": 2,
    }
    rows = run_recipe(tmp_path, samples, params)
    records = [row[Fields.meta][META_KEY] for row in rows]
    assert [r["status"] for r in records] == ["captioned"] * 3 + ["error"]
    assert records[3]["videos"][0]["error_kind"] == "missing_file"
    assert all(1 <= len(r["videos"][0]["timestamps"]) <= 24 for r in records[:3])
