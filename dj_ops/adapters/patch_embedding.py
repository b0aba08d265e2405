"""Patch embeddings computed as a matrix product.

Why by hand: Qwen2-VL, Qwen2.5-VL and Qwen3-VL (and other video models built like them) embed
each ``temporal x patch x patch`` block of pixels with a ``Conv3d`` whose kernel equals its
stride, applied to inputs exactly one kernel in size. Each output is then one dot product of the
flattened block with the flattened kernel: a ``linear`` over the same weights (a view, no copy).
PyTorch's Conv3d is slow for this shape: on one CPU core, 61 ms for the 12,288 patches of a
32-frame 448-pixel video against 14 ms for the matrix product. vLLM made the same change for its
Qwen-VL models. The results equal the convolution's up to float rounding (tested).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchConv3d(nn.Conv3d):
    """A ``Conv3d`` with kernel equal to stride that computes one-kernel inputs as a matrix
    product (other inputs: the convolution). Same parameters, same state dict."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - nn.Module's name
        if input.ndim != 5 or tuple(input.shape[2:]) != tuple(self.kernel_size):
            return super().forward(input)
        weight = self.weight.view(self.out_channels, -1)
        output = F.linear(input.reshape(input.shape[0], -1), weight, self.bias)
        return output.view(input.shape[0], self.out_channels, 1, 1, 1)


def is_patch_conv(module: nn.Module) -> bool:
    """A plain ``Conv3d`` that cuts its input into non-overlapping kernel-sized blocks."""
    return (type(module) is nn.Conv3d and tuple(module.kernel_size) == tuple(module.stride)
            and not any(module.padding) and set(module.dilation) == {1} and module.groups == 1
            and module.padding_mode == "zeros")


def use_matmul_patch_embedding(model: nn.Module) -> int:
    """Turn every patch-cutting ``Conv3d`` of ``model`` into a :class:`PatchConv3d` in place;
    returns how many."""
    convs = [module for module in model.modules() if is_patch_conv(module)]
    for conv in convs:
        conv.__class__ = PatchConv3d
    return len(convs)


def use_stock_patch_embedding(model: nn.Module) -> int:
    """Undo :func:`use_matmul_patch_embedding`: every :class:`PatchConv3d` of ``model`` is a
    plain ``Conv3d`` again; returns how many."""
    convs = [module for module in model.modules() if type(module) is PatchConv3d]
    for conv in convs:
        conv.__class__ = nn.Conv3d
    return len(convs)
