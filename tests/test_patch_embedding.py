"""Patch-cutting Conv3d computed as a matrix product: same results (up to float rounding), same
parameters, installed on the tiny Qwen-VL models the backend loads."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from transformers import AutoModelForImageTextToText

from dj_ops.adapters.patch_embedding import PatchConv3d, is_patch_conv, use_matmul_patch_embedding
from dj_ops.backends.base import BackendConfig
from dj_ops.backends.transformers_backend import TransformersBackend
from dj_ops.captioning.generation import parse_sampling_params


def patch_conv(bias: bool = True) -> nn.Conv3d:
    torch.manual_seed(0)
    return nn.Conv3d(3, 24, kernel_size=(2, 14, 14), stride=(2, 14, 14), bias=bias)


@pytest.mark.parametrize("bias", [True, False])
def test_one_kernel_inputs_give_the_convolution_s_result(bias):
    conv = patch_conv(bias)
    fast = copy.deepcopy(conv)
    assert use_matmul_patch_embedding(fast) == 1 and type(fast) is PatchConv3d
    blocks = torch.randn(50, 3, 2, 14, 14)
    with torch.no_grad():
        expected, got = conv(blocks), fast(blocks)
    assert got.shape == expected.shape == (50, 24, 1, 1, 1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert fast.state_dict().keys() == conv.state_dict().keys()


def test_larger_inputs_fall_back_to_the_convolution():
    conv = patch_conv()
    fast = copy.deepcopy(conv)
    use_matmul_patch_embedding(fast)
    frames = torch.randn(2, 3, 4, 28, 42)  # several blocks per input: a real convolution
    with torch.no_grad():
        assert torch.equal(fast(frames), conv(frames))


def test_only_patch_cutting_convolutions_qualify():
    assert is_patch_conv(patch_conv())
    assert not is_patch_conv(nn.Conv3d(3, 8, kernel_size=3, stride=1))  # overlapping
    assert not is_patch_conv(nn.Conv3d(3, 8, kernel_size=2, stride=2, padding=1))
    assert not is_patch_conv(nn.Conv2d(3, 8, kernel_size=2, stride=2))
    assert use_matmul_patch_embedding(nn.Sequential(nn.Conv3d(3, 8, 3), nn.ReLU())) == 0


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_qwen_vision_tower_gives_the_same_features(tiny_models, family):
    path = tiny_models[family]
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).eval()
    fast = copy.deepcopy(model)
    assert use_matmul_patch_embedding(fast) == 1
    patch = fast.model.visual.patch_embed.proj
    assert type(patch) is PatchConv3d
    config = model.config.vision_config
    grid = torch.tensor([[2, 4, 6]])  # (t, h, w) in patches
    pixels = torch.randn(int(grid.prod()), 3 * config.temporal_patch_size * config.patch_size ** 2)
    with torch.no_grad():
        expected = model.model.get_video_features(pixels, grid).pooler_output
        got = fast.model.get_video_features(pixels, grid).pooler_output
    for a, b in zip(got, expected, strict=True):
        # float rounding, amplified by the tower; a wrong weight layout would be of order 1
        assert a.shape == b.shape and ((a - b).norm() / b.norm()).item() < 1e-5


def test_the_backend_installs_it(qwen3):
    settings = parse_sampling_params({"max_new_tokens": 2}, 1)
    backend = TransformersBackend(BackendConfig(model=qwen3, settings=settings, num_candidates=1,
                                                batch_size=1, seed=0))
    assert type(backend.model.model.visual.patch_embed.proj) is PatchConv3d
