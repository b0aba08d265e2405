"""Shared pieces of the family and fault tests: clips of different lengths, the frame settings
that give them different frame counts, tiny checkpoints of every family built once a session."""

from __future__ import annotations

from pathlib import Path

from data_juicer.utils.mm_utils import SpecialTokens

from dj_ops.testing.clips import make_clip
from dj_ops.testing.tiny_families import TINY_FAMILIES, build_tiny_family
from dj_ops.testing.tiny_models import FAMILIES, build_tiny_model

# 2 frames a second, 2 to 8 frames, tiny frames: clips of 1, 2, 2 and 3 s give 2, 4, 4, 6 frames
VARIED_FRAMES = {"fps": 2.0, "min_frames": 2, "max_frames": 8, "max_pixels": 112 * 112,
                 "min_pixels": 28 * 28}
CLIP_SECONDS = {"one_second": 1, "two_seconds_a": 2, "two_seconds_b": 2, "three_seconds": 3}
FRAME_COUNTS = {"one_second": 2, "two_seconds_a": 4, "two_seconds_b": 4, "three_seconds": 6}
V, E = SpecialTokens.video, SpecialTokens.eoc


def make_varied_clips(folder: Path) -> dict[str, str]:
    """One small clip per :data:`CLIP_SECONDS` entry (the two 2 s clips differ in size)."""
    folder.mkdir(parents=True, exist_ok=True)
    return {name: str(make_clip(folder / f"{name}.mp4", seconds, 10, 96 + 16 * i, 64))
            for i, (name, seconds) in enumerate(CLIP_SECONDS.items())}


PROMPT_KEY = "prompt"  # each row's own prompt names its clip (op parameter prompt_key)


def samples_of(clips: dict[str, str]) -> list[dict]:
    """One row per clip, its name in the text and in its own prompt."""
    return [{"text": f"{V} {name} {E}", "videos": [path],
             PROMPT_KEY: f"Describe the clip {name}."} for name, path in clips.items()]


class FamilyModels:
    """Tiny checkpoints under ``root``, each built on first use (once per session)."""

    def __init__(self, root: Path):
        self.root = root
        self.built: dict[str, str] = {}

    def __getitem__(self, family: str) -> str:
        if family not in self.built:
            out = self.root / family
            self.built[family] = (build_tiny_model(family, out) if family in FAMILIES
                                  else build_tiny_family(family, out))
        return self.built[family]


ALL_FAMILIES = ("qwen2_vl", *TINY_FAMILIES)
