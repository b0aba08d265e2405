"""Qwen-VL video preprocessing in fewer copies: cut the uint8 frames into patches first, then
convert and normalize once.

Why by hand: transformers' Qwen2-VL / Qwen3-VL video processors (``_preprocess``) convert every
frame to float32 and normalize it, then copy the float pixels into the patch layout
(``patchify``), then copy them again to concatenate the videos: three float-sized passes, about
0.2 s per 32-frame 448-pixel video on one CPU core, as much as decoding the video. Normalizing
is per channel and patchifying only moves pixels, so the two commute: here the patch layout is
built from the uint8 frames (a quarter of the bytes), then the processor's own
``rescale_and_normalize`` converts and normalizes it in place. The output is the processor's,
bit for bit (tested), in about a third of the time.

It applies to frames already sampled and sized (``do_resize`` off: the op's frames); anything
else goes to the processor's own ``_preprocess``.
"""

from __future__ import annotations

import torch


def install_patchify_first(video_processor) -> None:
    """Make ``video_processor`` (a transformers Qwen2-VL / Qwen3-VL video processor) build its
    patches from uint8 frames; other inputs keep its own path."""
    own = video_processor._preprocess
    if getattr(own, "patchify_first", False):
        return

    def _preprocess(videos, **kwargs):
        if not _applies(videos, kwargs):
            return own(videos=videos, **kwargs)
        return _patchify_first(video_processor, videos, **kwargs)

    _preprocess.patchify_first = True
    video_processor._preprocess = _preprocess


def _applies(videos, kwargs) -> bool:
    temporal = kwargs.get("temporal_patch_size")
    return (not kwargs.get("do_resize") and kwargs.get("do_rescale")
            and kwargs.get("do_normalize") and bool(temporal) and bool(videos)
            and all(torch.is_tensor(v) and v.dtype == torch.uint8 and v.ndim == 4
                    and v.shape[0] % temporal == 0 for v in videos))


def uint8_patches(video: torch.Tensor, patch_size: int, merge_size: int,
                  temporal_patch_size: int) -> tuple[torch.Tensor, list[int]]:
    """``video`` (``T, C, H, W``) in the processors' patch layout, ``(T/t * H/p * W/p, C, t * p,
    p)``, with its grid ``[T/t, H/p, W/p]``: the same element order as transformers'
    ``patchify`` (``(N, C * t * p * p)`` once flattened), with the channel kept apart so that
    per-channel normalization still applies."""
    frames, channels, height, width = video.shape
    grid = [frames // temporal_patch_size, height // patch_size, width // patch_size]
    blocks = video.view(grid[0], temporal_patch_size, channels, grid[1] // merge_size, merge_size,
                        patch_size, grid[2] // merge_size, merge_size, patch_size)
    blocks = blocks.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    count = grid[0] * grid[1] * grid[2]
    return blocks.reshape(count, channels, temporal_patch_size * patch_size, patch_size), grid


def _patchify_first(processor, videos, *, rescale_factor, image_mean, image_std, patch_size,
                    temporal_patch_size, merge_size, return_tensors=None, **_):
    from transformers.feature_extraction_utils import BatchFeature

    pixels, grids = [], []
    for video in videos:
        patches, grid = uint8_patches(video, patch_size, merge_size, temporal_patch_size)
        pixels.append(patches)
        grids.append(grid)
    # One uint8 tensor for all videos: the float conversion below is the only float copy.
    patches = pixels[0] if len(pixels) == 1 else torch.cat(pixels)
    patches = processor.rescale_and_normalize(patches, True, rescale_factor, True,
                                              image_mean, image_std)
    return BatchFeature(
        data={"pixel_values_videos": patches.flatten(1), "video_grid_thw": torch.tensor(grids)},
        tensor_type=return_tensors,
    )
