"""The benchmark scripts' pure parts: FLOPs model (checked against the real architecture's
weights), peak rates, request lists, summaries."""

from __future__ import annotations

import pytest
import torch
import transformers

from bench.flops import (
    VideoPrompt,
    caption_flops,
    peak_bf16_tflops,
    text_params_per_token,
    vision_params_per_patch,
)
from bench.measure import markdown_table, spread, time_calls
from bench.model_shapes import QWEN2_5_VL_7B, SMOKE
from bench.scaling import best_of
from bench.workload import Workload, batches, cycled, samples_for

TINY_TEXT = {"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2,
             "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 4}


def test_text_params_per_token_counts_projections_mlp_and_head():
    # per layer: q 8*2*4 + k,v 2*8*1*4 + o 2*4*8 + mlp 3*8*16 = 576; head 8*10
    assert text_params_per_token(TINY_TEXT, vocab_size=10) == 2 * 576 + 80


@pytest.mark.parametrize("shape", [SMOKE, QWEN2_5_VL_7B], ids=["smoke", "qwen2_5_vl_7b"])
def test_param_counts_match_the_real_architecture(shape):
    config = transformers.Qwen2_5_VLConfig(
        text_config={**shape["text_config"], "vocab_size": shape["vocab_size"]},
        vision_config=shape["vision_config"], tie_word_embeddings=False)
    with torch.device("meta"):
        model = transformers.Qwen2_5_VLForConditionalGeneration(config)
    weights = {n: p.numel() for n, p in model.named_parameters()
               if n.endswith("weight") and p.ndim > 1 and "embed_tokens" not in n}
    text = sum(v for n, v in weights.items() if "visual" not in n)
    merge = shape["vision_config"]["spatial_merge_size"] ** 2
    vision = sum(v / merge if "merger" in n else v for n, v in weights.items() if "visual" in n)
    assert text_params_per_token(shape["text_config"], shape["vocab_size"]) == text
    assert vision_params_per_patch(shape["vision_config"]) == vision


def test_caption_flops_grow_linearly_with_candidates_and_tokens():
    video = VideoPrompt(grid_t=12, grid_h=16, grid_w=16, prompt_tokens=800)
    base = caption_flops(QWEN2_5_VL_7B, video, 0, 128)
    one = caption_flops(QWEN2_5_VL_7B, video, 1, 128)
    assert caption_flops(QWEN2_5_VL_7B, video, 4, 128) == pytest.approx(base + 4 * (one - base))
    # a generated token: 2 FLOPs per weight met (7,070,285,824) plus attention over the mean
    # context (800 + 64.5 tokens): 4 * 28 layers * 3584 * 864.5
    assert (one - base) / 128 == pytest.approx(2 * 7_070_285_824 + 4 * 28 * 3584 * 864.5)


def test_peak_rates_by_device_name():
    assert peak_bf16_tflops("NVIDIA H200") == 989.0
    assert peak_bf16_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_bf16_tflops("Some CPU") is None


def test_request_lists_and_batches():
    assert cycled([1, 2, 3], 7) == [1, 2, 3, 1, 2, 3, 1]
    with pytest.raises(ValueError):
        cycled([], 2)
    assert batches(list("abcde"), 2) == [["a", "b"], ["c", "d"], ["e"]]
    batch = samples_for(["x.mp4", "y.mp4"])
    assert batch["videos"] == [["x.mp4"], ["y.mp4"]] and len(batch["text"]) == 2


def test_workload_sets_an_exact_token_count():
    params = Workload(requests=3, caption_num=4, new_tokens=64, model="m").op_params()
    assert params["sampling_params"] == {"max_new_tokens": 64, "min_new_tokens": 64}
    assert (params["caption_num"], params["hf_model"]) == (4, "m")


def test_summaries():
    assert spread([2.0, 6.0, 4.0]) == {"median": 4.0, "min": 2.0, "max": 6.0}
    table = markdown_table([{"a": 1234.5, "b": None}], [("a", "A"), ("b", "B")])
    assert table.splitlines() == ["| A | B |", "|---|---|", "| 1234 |  |"]


def test_best_of_keeps_the_fastest_run_and_the_highest_memory():
    runs = [{"videos_per_s": 1.5, "peak_rss_mib": 900.0, "seconds": 2.0},
            {"videos_per_s": 1.0, "peak_rss_mib": 950.0, "seconds": 3.0}]
    assert best_of(runs) == {"videos_per_s": 1.5, "peak_rss_mib": 950.0, "seconds": 2.0,
                             "runs_videos_per_s": [1.5, 1.0]}


def test_time_calls_adds_the_time_of_each_call_and_keeps_the_result():
    import time

    class Part:
        def work(self, x):
            time.sleep(0.01)
            return 2 * x

    spent = [0.0]
    time_calls(Part, ("work",), spent)
    assert Part().work(3) == 6 and Part().work(4) == 8
    assert spent[0] >= 0.02
