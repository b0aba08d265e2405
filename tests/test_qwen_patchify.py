"""Qwen-VL video preprocessing from uint8 patches: the processor's own output, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

from dj_ops.adapters import resolve_adapter
from dj_ops.adapters.base import PRESAMPLED_VIDEO_KWARGS
from dj_ops.adapters.qwen_patchify import install_patchify_first, uint8_patches
from dj_ops.backends.hf_inputs import hf_inputs_for
from dj_ops.video import FrameSettings, decode_video

FACTORS = {"qwen2_5_vl": 28, "qwen3_vl": 32}
KWARGS = {**PRESAMPLED_VIDEO_KWARGS, "cap_pixels_per_frame": False}


def random_video(frames: int, height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, height, width, 3), np.uint8)


def metadata(video: np.ndarray) -> dict:
    count = len(video)
    return {"total_num_frames": count, "fps": 2.0, "duration": count / 2.0,
            "frames_indices": list(range(count)), "width": video.shape[2],
            "height": video.shape[1]}


def preprocess(processor, videos: list[np.ndarray], **kwargs):
    return processor(videos=videos, video_metadata=[metadata(v) for v in videos],
                     return_tensors="pt", **{**KWARGS, **kwargs})


def own_and_fused(model: str, videos: list[np.ndarray], **kwargs):
    own = transformers.AutoProcessor.from_pretrained(model).video_processor
    fused = transformers.AutoProcessor.from_pretrained(model).video_processor
    install_patchify_first(fused)
    return preprocess(own, videos, **kwargs), preprocess(fused, videos, **kwargs)


def assert_identical(expected, actual) -> None:
    assert set(expected.keys()) == set(actual.keys())
    for key in expected.keys():
        assert expected[key].dtype == actual[key].dtype, key
        assert torch.equal(expected[key], actual[key]), key


@pytest.mark.parametrize("family", sorted(FACTORS))
def test_same_pixels_as_the_processor_on_decoded_clips(tiny_models, videos, family):
    settings = FrameSettings(size_factor=FACTORS[family], max_frames=8,
                             min_pixels=64 * 64, max_pixels=224 * 224)
    frames = [decode_video(path, settings).frames for path in videos[:3]]
    for batch in ([frames[0]], frames):  # one video per call (the op's), and several
        expected, actual = own_and_fused(tiny_models[family], batch)
        assert_identical(expected, actual)
        assert len(actual["video_grid_thw"]) == len(batch)


@pytest.mark.parametrize("family", sorted(FACTORS))
def test_same_pixels_for_other_shapes(tiny_models, family):
    factor = FACTORS[family]
    batch = [random_video(2, factor, factor, 0), random_video(6, 3 * factor, 2 * factor, 1),
             random_video(4, 2 * factor, 5 * factor, 2)]
    expected, actual = own_and_fused(tiny_models[family], batch)
    assert_identical(expected, actual)
    # patches: (frames / 2) x (height / patch) x (width / patch), a factor being two patches
    assert actual["pixel_values_videos"].shape[0] == 4 * (1 * 1 * 1 + 3 * 3 * 2 + 2 * 2 * 5)


@pytest.mark.parametrize("kwargs", [{"do_resize": True}, {"do_normalize": False}])
def test_other_settings_take_the_processors_own_path(tiny_models, kwargs):
    video = random_video(4, 64, 96, 3)
    expected, actual = own_and_fused(tiny_models["qwen3_vl"], [video], **kwargs)
    assert_identical(expected, actual)


def test_an_odd_frame_count_takes_the_processors_own_path(tiny_models):
    video = random_video(3, 64, 64, 4)  # padded to 4 frames by the processor itself
    expected, actual = own_and_fused(tiny_models["qwen3_vl"], [video])
    assert_identical(expected, actual)
    assert actual["video_grid_thw"].tolist() == [[2, 4, 4]]  # 16-pixel patches


def test_patch_layout_matches_transformers_patchify(tiny_models):
    processor = transformers.AutoProcessor.from_pretrained(tiny_models["qwen3_vl"])
    video = torch.from_numpy(random_video(4, 64, 96, 5)).permute(0, 3, 1, 2)  # T, C, H, W
    expected, *grid = processor.video_processor.patchify(video[None], 16, 2, 2)
    patches, actual_grid = uint8_patches(video, 16, 2, 2)
    assert actual_grid == grid == [2, 4, 6]
    assert torch.equal(patches.flatten(1), expected[0])


def test_the_qwen_adapters_install_it_once(tiny_models):
    for family, model in tiny_models.items():
        processor = hf_inputs_for(resolve_adapter(model, {})).load_processor(model)
        installed = processor.video_processor._preprocess
        assert installed.patchify_first
        install_patchify_first(processor.video_processor)
        assert processor.video_processor._preprocess is installed, family
