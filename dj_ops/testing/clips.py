"""Small video clips for tests and the demo, written with PyAV.

Frame ``i`` of a generated clip shows ``i`` in binary on its left half (see
:func:`frame_pattern`), so a test can read back which frame it got with
:func:`read_frame_index`; the right half is a moving gradient.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# ../shared/data/videos beside a checkout of this repository (absent in a user's clone).
SHARED_VIDEOS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "videos"
GENERATED_VIDEOS_DIR = Path(tempfile.gettempdir()) / "dj_ops_test_videos"
# (seconds, fps, width, height, keyframe interval) of the stand-ins for the shared clips.
GENERATED_SAMPLE_SPECS = (
    (4.0, 24, 320, 180, 48),
    (3.0, 24, 180, 320, 250),
    (5.0, 30, 240, 136, 30),
    (2.5, 25, 203, 117, 12),
    (3.0, 24, 160, 90, 72),
)
VFR_TIME_BASE = Fraction(1, 1000)
INDEX_BITS = 8  # frame index written as this many black/white stripes (mod 256)
DARK, LIGHT = 16, 235


def frame_pattern(index: int, width: int, height: int) -> np.ndarray:
    """RGB frame ``index``: its left half shows ``index % 256`` in binary as vertical
    stripes (most significant bit first), its right half a moving gradient."""
    image = np.empty((height, width, 3), dtype=np.uint8)
    half = width // 2
    for bit, columns in enumerate(np.array_split(np.arange(half), INDEX_BITS)):
        on = (index >> (INDEX_BITS - 1 - bit)) & 1
        image[:, columns] = LIGHT if on else DARK
    ramp = (np.arange(width - half) * 255 // max(1, width - half - 1) + 8 * index) % 256
    image[:, half:] = ramp.astype(np.uint8)[None, :, None]
    return image


def read_frame_index(image: np.ndarray) -> int:
    """The index written by :func:`frame_pattern` into ``image`` (any size, upright)."""
    half = image.shape[1] // 2
    value = 0
    for columns in np.array_split(np.arange(half), INDEX_BITS):
        centre = columns[len(columns) // 2]
        value = (value << 1) | int(image[:, centre].mean() > (DARK + LIGHT) / 2)
    return value


def _encoder_options(codec: str, gop: int | None, bframes: int | None) -> dict[str, str]:
    """Codec options: for libx264, fixed keyframe spacing with B-frames kept; ``bframes``:
    exactly that many B-frames between P-frames, none referenced by others."""
    if codec != "libx264":
        return {}
    params = "scenecut=0" + (f":keyint={gop}:min-keyint={gop}" if gop else "")
    if bframes is not None:
        params += f":bframes={bframes}:b-adapt=0:b-pyramid=none"
    return {"preset": "veryfast", "x264-params": params}


def make_clip(
    path: str | os.PathLike,
    seconds: float = 2.0,
    fps: int = 10,
    width: int = 64,
    height: int = 48,
    gop: int | None = None,
    *,
    codec: str = "libx264",
    frame_times: Sequence[float] | None = None,
    rotation: int | None = None,
    faststart: bool = False,
    bframes: int | None = None,
) -> Path:
    """Write a clip of ``round(seconds * fps)`` frames (or one per ``frame_times`` entry,
    at those times: variable frame rate) and return its path.

    :param gop: keyframe interval in frames (None: the encoder's default).
    :param rotation: display-matrix rotation, counter-clockwise degrees.
    :param faststart: put the mp4 index before the media data.
    :param bframes: libx264 only: that many unreferenced B-frames after each P-frame
        (None: as the encoder decides, mostly none for these patterns).
    """
    path = Path(path)
    count = len(frame_times) if frame_times is not None else max(1, round(seconds * fps))
    options = {"movflags": "faststart"} if faststart else {}
    # 4:2:0 needs even sides; odd-sized clips are written in 4:4:4.
    pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
    with av.open(str(path), "w", options=options) as container:
        codec_options = _encoder_options(codec, gop, bframes)
        stream = container.add_stream(codec, rate=fps, options=codec_options)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if gop:
            stream.codec_context.gop_size = gop
        if frame_times is not None:
            stream.codec_context.time_base = VFR_TIME_BASE
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for index in range(count):
            frame = av.VideoFrame.from_ndarray(frame_pattern(index, width, height), "rgb24")
            if frame_times is not None:
                frame.pts = round(frame_times[index] / VFR_TIME_BASE)
                frame.time_base = VFR_TIME_BASE
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` (for empty, text or truncated "videos")."""
    path = Path(path)
    path.write_bytes(data)
    return path


def generate_sample_videos(folder: Path) -> Path:
    """Write five small stand-ins ``video1..5.mp4`` into ``folder`` (once; atomic per file)."""
    folder.mkdir(parents=True, exist_ok=True)
    for number, (seconds, fps, width, height, gop) in enumerate(GENERATED_SAMPLE_SPECS, 1):
        target = folder / f"video{number}.mp4"
        if not target.is_file():
            partial = target.with_suffix(f".{os.getpid()}.partial.mp4")
            make_clip(partial, seconds, fps, width, height, gop)
            os.replace(partial, target)  # atomic: parallel runs never see half a file
    return folder


def sample_videos_dir() -> Path:
    """The shared real clips ``video1..5.mp4`` when present (a full checkout beside
    ``shared/``), else five small generated stand-ins, made once per machine."""
    if all((SHARED_VIDEOS_DIR / f"video{i}.mp4").is_file() for i in range(1, 6)):
        return SHARED_VIDEOS_DIR
    return generate_sample_videos(GENERATED_VIDEOS_DIR)


def sample_videos() -> list[Path]:
    """Paths of ``video1..5.mp4`` in :func:`sample_videos_dir`."""
    folder = sample_videos_dir()
    return [folder / f"video{i}.mp4" for i in range(1, 6)]


def sample_video_paths(videos_dir: Path, fallback_dir: Path) -> list[Path]:
    """The ``.mp4`` files of ``videos_dir`` if it has any, else clips generated in
    ``fallback_dir`` (for the demo in a clone without ``../shared``)."""
    found = sorted(Path(videos_dir).glob("*.mp4")) if Path(videos_dir).is_dir() else []
    if found:
        return found
    folder = generate_sample_videos(Path(fallback_dir))
    return [folder / f"video{i}.mp4" for i in range(1, 6)]
