"""Memory bounded by a window: a long video's windows are handed over one by one from one
decoding pass, and the op holds at most ``generation_batch_size`` windows' frames (plus the one
handed over next), whatever the number of windows. Measured as behaviour, in the op's process:
the decoded frames it holds are the shared-memory files the decoding worker hands over
(``memfd:dj_ops_frames`` mappings in ``/proc/self/maps``), read at every backend call."""

from __future__ import annotations

import mmap

import pytest

from dj_ops.backends.transformers_backend import TransformersBackend
from dj_ops.testing.clips import make_clip
from tests.conftest import make_op, run_op

# 4 s windows overlapping 1 s (3 s apart), 1 frame per second, 4 frames each
WINDOWS = {"window_seconds": 4.0, "window_overlap": 1.0, "fps": 1.0, "max_frames": 4,
           "decode_workers": 1, "generation_batch_size": 1, "caption_key": "caption",
           "keep_original_sample": False}


def mapped_frames() -> list[int]:
    """The sizes of the decoded-frame files mapped in this process now."""
    sizes = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            if "dj_ops_frames" in line:
                start, end = (int(x, 16) for x in line.split()[0].split("-"))
                sizes.append(end - start)
    return sizes


def held_frames_per_call(monkeypatch) -> list[tuple[int, list[int]]]:
    """Per backend call: how many requests carried frames, and the frame files mapped then."""
    calls = []
    generate = TransformersBackend.generate

    def recording(self, requests):
        calls.append((sum(r.frames is not None for r in requests), mapped_frames()))
        return generate(self, requests)

    monkeypatch.setattr(TransformersBackend, "generate", recording)
    return calls


@pytest.mark.parametrize("windows", [4, 16])
def test_frames_held_stay_within_a_window_or_two(qwen3, tmp_path, monkeypatch, windows):
    seconds = 3 * (windows - 1) + 4  # the last window is a full one
    path = str(make_clip(tmp_path / "long.mp4", seconds=seconds, fps=2, faststart=True))
    calls = held_frames_per_call(monkeypatch)
    (row,) = run_op(make_op(qwen3, **WINDOWS), [{"text": "", "videos": [path]}])
    assert len(row["caption_windows"][0]) == windows and row["caption"][0].strip()
    window_calls = [held for carried, held in calls if carried]
    assert len(window_calls) == windows  # one request per call (generation_batch_size 1)
    # one window's frames (as its record says), in whole pages
    one = max(f["count"] * f["height"] * f["width"] * 3
              for f in (w["frames"] for w in row["caption_windows"][0]))
    one = -(-one // mmap.PAGESIZE) * mmap.PAGESIZE
    assert max(size for held in window_calls for size in held) == one
    # the window being captioned and at most the next one, handed over already: the same
    # bound for 4 windows as for 16 (the whole video's frames are never held)
    assert max(map(len, window_calls)) <= 2
    assert max(map(sum, window_calls)) <= 2 * one
    # the merge (text only) runs after every window's frames were released
    merge = [held for carried, held in calls if not carried]
    assert merge == [[]]
