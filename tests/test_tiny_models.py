"""Tiny random-weight Qwen-VL checkpoints: build, load through the Auto classes, generate."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torchvision")  # transformers' video processors need it
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from dj_ops.testing import tiny_models  # noqa: E402
from dj_ops.testing.tiny_models import MARKER_FILE, build_tiny_model  # noqa: E402

MAX_NEW_TOKENS = 8
SOURCE_FPS = 30.0
PROMPT = "Describe this video."
# Frame sides must be multiples of patch_size * merge_size: the processor must not resize them.
FACTOR = {"qwen2_vl": 28, "qwen2_5_vl": 28, "qwen3_vl": 32}
# (frames, height and width in FACTOR units): two videos of different lengths and sizes.
VIDEO_SHAPES = ((4, 2, 3), (6, 3, 2))
# Pre-decoded frames: no resampling, no resizing (sides are already multiples of the factor).
VIDEOS_KWARGS = {"do_sample_frames": False, "do_resize": False, "cap_pixels_per_frame": False}


def synthetic_video(frames: int, height: int, width: int, seed: int) -> tuple[np.ndarray, dict]:
    """Random uint8 frames (T, H, W, 3) and the metadata of a uniform sample from a longer clip."""
    total = frames * 10
    indices = np.linspace(0, total - 1, frames).round().astype(int).tolist()
    pixels = np.random.default_rng(seed).integers(0, 256, (frames, height, width, 3), np.uint8)
    metadata = {
        "fps": SOURCE_FPS,
        "frames_indices": indices,
        "total_num_frames": total,
        "duration": total / SOURCE_FPS,
        "width": width,
        "height": height,
    }
    return pixels, metadata


def caption(processor, model, videos, **generate_kwargs) -> list[list[int]]:
    """Greedy-caption a left-padded batch of (frames, metadata); new token ids, padding removed."""
    messages = [
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": PROMPT}]}]
        for _ in videos
    ]
    texts = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = processor(
        text=texts,
        videos=[frames for frames, _ in videos],
        video_metadata=[metadata for _, metadata in videos],
        videos_kwargs=VIDEOS_KWARGS,
        padding=True,
        return_tensors="pt",
    )
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, **generate_kwargs)
    new_tokens = output[:, inputs["input_ids"].shape[1] :].tolist()
    pad_id = model.generation_config.pad_token_id
    return [[token for token in row if token != pad_id] for row in new_tokens]


@pytest.fixture(scope="module")
def models_root(tmp_path_factory) -> Path:
    """One folder for this module's builds, one subfolder per family."""
    return tmp_path_factory.mktemp("tiny_models")


@pytest.fixture(scope="module", params=sorted(tiny_models.FAMILIES))
def built(request, models_root):
    """(family, path, processor, model) of a fresh seed-0 build, loaded the real way."""
    family = request.param
    path = build_tiny_model(family, models_root / family)
    processor = transformers.AutoProcessor.from_pretrained(path)
    processor.tokenizer.padding_side = "left"
    model = transformers.AutoModelForImageTextToText.from_pretrained(path).eval()
    return family, path, processor, model


def videos_for(family: str) -> list[tuple[np.ndarray, dict]]:
    """The ``VIDEO_SHAPES`` videos, sized for ``family``."""
    factor = FACTOR[family]
    return [
        synthetic_video(frames, rows * factor, cols * factor, seed=i)
        for i, (frames, rows, cols) in enumerate(VIDEO_SHAPES)
    ]


def test_loads_as_the_real_classes(built):
    family, _, processor, model = built
    spec = tiny_models.FAMILIES[family]
    assert type(model).__name__ == spec.model_class
    assert type(processor).__name__ == spec.processor_class
    assert sum(p.numel() for p in model.parameters()) < 1_000_000


def test_generates_within_max_new_tokens(built):
    family, _, processor, model = built
    (tokens,) = caption(processor, model, videos_for(family)[:1], do_sample=False)
    assert 0 < len(tokens) <= MAX_NEW_TOKENS
    assert processor.decode(tokens, skip_special_tokens=True).strip()


def test_greedy_generation_is_deterministic(built):
    family, _, processor, model = built
    videos = videos_for(family)[:1]
    assert caption(processor, model, videos, do_sample=False) == caption(
        processor, model, videos, do_sample=False
    )


def test_batched_greedy_equals_one_at_a_time(built):
    family, _, processor, model = built
    videos = videos_for(family)
    one_at_a_time = [caption(processor, model, [video], do_sample=False)[0] for video in videos]
    assert caption(processor, model, videos, do_sample=False) == one_at_a_time


def test_processor_keeps_frames_and_timestamps(built):
    family, _, processor, _ = built
    frames, metadata = videos_for(family)[0]
    inputs = processor(
        text=["<|vision_start|><|video_pad|><|vision_end|>"],
        videos=[frames],
        video_metadata=[metadata],
        videos_kwargs=VIDEOS_KWARGS,
        return_tensors="pt",
    )
    patch = processor.video_processor.patch_size
    expected_grid = [frames.shape[0] // 2, frames.shape[1] // patch, frames.shape[2] // patch]
    assert inputs["video_grid_thw"].tolist() == [expected_grid]
    if family == "qwen3_vl":
        first_pair = metadata["frames_indices"][:2]
        seconds = sum(first_pair) / 2 / SOURCE_FPS
        assert f"<{seconds:.1f} seconds>" in processor.decode(inputs["input_ids"][0])


def test_same_seed_gives_identical_checkpoint(built, tmp_path):
    family, path, _, _ = built
    again = Path(build_tiny_model(family, tmp_path / family, seed=0))
    for name in ("model.safetensors", "tokenizer.json"):
        assert (again / name).read_bytes() == (Path(path) / name).read_bytes(), name


def test_rebuild_is_a_no_op(built):
    family, path, _, _ = built
    files = [Path(path) / MARKER_FILE, Path(path) / "model.safetensors"]
    mtimes = [file.stat().st_mtime_ns for file in files]
    start = time.perf_counter()
    assert build_tiny_model(family, path) == path
    assert time.perf_counter() - start < 0.5
    assert [file.stat().st_mtime_ns for file in files] == mtimes


def test_tiny_model_path_uses_the_cache_dir(built, models_root, monkeypatch):
    family, path, _, _ = built
    monkeypatch.setenv(tiny_models.CACHE_ENV_VAR, str(models_root))
    assert tiny_models.tiny_model_path(family) == path


def test_command_line_prints_the_path(built, capsys):
    family, path, _, _ = built
    tiny_models.main(["--family", family, "--out", path])
    assert capsys.readouterr().out.strip() == path


def test_unknown_family_names_the_allowed_ones(tmp_path):
    with pytest.raises(ValueError, match="qwen2_5_vl.*qwen3_vl"):
        build_tiny_model("llava", tmp_path / "llava")
    assert not (tmp_path / "llava").exists()


def test_refuses_to_replace_a_foreign_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(FileExistsError):
        build_tiny_model("qwen3_vl", tmp_path)
    assert (tmp_path / "notes.txt").exists()


def test_build_from_another_builder_version_is_replaced(tmp_path, monkeypatch):
    out_dir = tmp_path / "qwen3_vl"
    monkeypatch.setattr(tiny_models, "BUILDER_VERSION", "old")
    build_tiny_model("qwen3_vl", out_dir)
    monkeypatch.undo()
    build_tiny_model("qwen3_vl", out_dir)
    marker = (out_dir / MARKER_FILE).read_text()
    assert f'"builder_version": "{tiny_models.BUILDER_VERSION}"' in marker
    assert [p.name for p in tmp_path.iterdir()] == ["qwen3_vl"]  # no temporary folder left


@pytest.mark.parametrize("family, section", [("qwen3_vl", [8, 4, 4]),
                                             ("qwen2_5_vl", [4, 6, 6])])
def test_head_dim_is_a_parameter(tmp_path, family, section):
    """vLLM's CPU attention needs head_dim >= 32: the same builder makes that variant, with the
    hidden size and the mrope section (adding up to head_dim / 2) scaled to it."""
    import transformers

    from dj_ops.testing.tiny_models import VLLM_HEAD_DIM, build_tiny_model

    path = build_tiny_model(family, tmp_path / family, head_dim=VLLM_HEAD_DIM)
    text = transformers.AutoConfig.from_pretrained(path).text_config
    assert text.head_dim == VLLM_HEAD_DIM and text.hidden_size == 4 * VLLM_HEAD_DIM
    assert text.rope_parameters["mrope_section"] == section
    assert sum(section) == VLLM_HEAD_DIM // 2
    model = transformers.AutoModelForImageTextToText.from_pretrained(path)
    assert model.config.vision_config.out_hidden_size == text.hidden_size
    with pytest.raises(ValueError, match="multiple of 16"):
        build_tiny_model(family, tmp_path / "bad", head_dim=24)
