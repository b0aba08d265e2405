"""Frame strips for the run report: made from decoded frames, bounded in size, stable choice."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from dj_ops.captioning.records import VideoOutcome, no_thumbnail
from dj_ops.video.thumbnails import ThumbnailSettings, frame_strip, tile_indices, wanted

EVERY = ThumbnailSettings(share=1.0)


def decoded(frames: int, height: int = 252, width: int = 448, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, height, width, 3), np.uint8)


def image_of(strip: dict) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(strip["image"])))


def test_a_strip_holds_evenly_spread_frames_at_their_timestamps():
    frames = decoded(20)
    times = [0.5 * i for i in range(20)]
    strip = frame_strip(frames, times, EVERY)
    picks = tile_indices(20, EVERY.max_frames)
    assert picks[0] == 0 and picks[-1] == 19 and len(picks) == 8
    assert list(strip["timestamps"]) == [times[i] for i in picks]
    image = image_of(strip)
    assert image.format == "JPEG"
    assert image.size == (8 * strip["width"], strip["height"])
    assert strip["height"] <= EVERY.height
    # the tiles are the frames, shrunk: each tile's mean colour is its frame's
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    for tile, index in enumerate(picks):
        mean = pixels[:, tile * strip["width"]:(tile + 1) * strip["width"]].mean()
        assert abs(mean - frames[index].mean()) < 6


@settings(max_examples=25, deadline=None)
@given(count=st.integers(1, 40), height=st.integers(8, 300), width=st.integers(8, 300),
       max_frames=st.integers(1, 10), max_bytes=st.integers(1024, 30_000))
def test_a_strip_never_exceeds_its_bounds(count, height, width, max_frames, max_bytes):
    bounds = ThumbnailSettings(1.0, max_frames=max_frames, height=16, max_bytes=max_bytes)
    strip = frame_strip(decoded(count, height, width), [0.1 * i for i in range(count)], bounds)
    if strip is None:  # even one tile over max_bytes: none rather than an unbounded one
        return
    assert len(base64.b64decode(strip["image"])) <= max_bytes
    assert len(strip["timestamps"]) <= max_frames
    assert strip["height"] <= 16
    assert image_of(strip).size == (len(strip["timestamps"]) * strip["width"], strip["height"])


def test_no_frames_no_strip_and_the_record_keeps_its_shape():
    assert frame_strip(np.zeros((0, 10, 10, 3), np.uint8), [], EVERY) is None
    empty = VideoOutcome("a.mp4").as_dict()["thumbnail"]
    real = VideoOutcome("a.mp4", thumbnail=frame_strip(decoded(3), [0, 1, 2], EVERY)).as_dict()
    assert set(empty) == set(real["thumbnail"]) == set(no_thumbnail())
    for key in empty:
        assert type(empty[key]) is type(real["thumbnail"][key])
    assert empty["timestamps"].dtype == real["thumbnail"]["timestamps"].dtype == np.float64


def test_which_videos_get_a_strip_is_a_stable_share_of_paths():
    paths = [f"/videos/{i}.mp4" for i in range(4000)]
    chosen = [p for p in paths if wanted(p, 0.25)]
    assert chosen == [p for p in paths if wanted(p, 0.25)]  # the same choice every time
    assert 0.2 < len(chosen) / len(paths) < 0.3
    assert set(chosen) <= {p for p in paths if wanted(p, 0.5)}  # a larger share keeps these
    assert not any(wanted(p, 0.0) for p in paths) and all(wanted(p, 1.0) for p in paths)


@pytest.mark.parametrize("bad", [{"share": 1.5}, {"share": -0.1}, {"max_frames": 0},
                                 {"height": 2}, {"max_bytes": 10}])
def test_bad_settings_are_refused_naming_the_bound(bad):
    with pytest.raises(ValueError, match="thumbnail"):
        ThumbnailSettings(**bad)
