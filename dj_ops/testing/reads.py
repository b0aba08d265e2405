"""How many bytes a call reads, and clips whose size is mostly picture data (for tests and
bench/bench_decode.py: is each video read once?).

:func:`bytes_read` counts with the process's I/O counter (``rchar`` in ``/proc/self/io``, Linux):
every byte any thread of the process read with ``read``-like calls, FFmpeg's included, whatever
the file system or cache. The clips of :mod:`dj_ops.testing.clips` compress to a few tens of kB,
where FFmpeg's own first read (32 kB) weighs as much as the picture data; :func:`make_noisy_clip`
writes clips of a few MB with B-frames.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

from dj_ops.testing.clips import frame_pattern

PROC_IO = Path("/proc/self/io")


def read_counter_available() -> bool:
    return PROC_IO.is_file()


def _rchar() -> int:
    for line in PROC_IO.read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise OSError(f"no rchar in {PROC_IO}")


def bytes_read(call: Callable[[], object]) -> int:
    """Bytes this process read while running ``call()`` (its own reads of the counter aside)."""
    before = _rchar()
    overhead = _rchar() - before  # what reading the counter itself adds
    before = _rchar()
    call()
    return _rchar() - before - overhead


def read_once(path: str | os.PathLike) -> int:
    """Bytes FFmpeg reads to open ``path`` and demux every packet of its first video stream:
    what one pass over the file costs."""
    def demux() -> None:
        with av.open(str(path)) as container:
            for _ in container.demux(container.streams.video[0]):
                pass
    return bytes_read(demux)


def make_noisy_clip(path: str | os.PathLike, frames: int = 72, fps: int = 24, width: int = 480,
                    height: int = 272, *, bframes: int = 3, faststart: bool = False) -> Path:
    """A libx264 clip of a few MB: frame ``i`` shows ``i`` on its left half as
    :func:`~dj_ops.testing.clips.frame_pattern` does, and noise moving sideways on its right
    half; a keyframe every 48 frames, ``bframes`` B-frames between reference frames, B-frames
    referenced in a pyramid (x264's default)."""
    path = Path(path)
    noise = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    params = f"keyint=48:min-keyint=48:scenecut=0:bframes={bframes}:b-adapt=0:b-pyramid=normal"
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream("libx264", rate=fps,
                                      options={"preset": "ultrafast", "x264-params": params})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            image = np.roll(noise, 4 * index, axis=1)
            image[:, : width // 2] = frame_pattern(index, width, height)[:, : width // 2]
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, "rgb24")))
        container.mux(stream.encode(None))
    return path


def remux(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """``source``'s video packets copied into ``target`` (its extension picks the container)."""
    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.size:
                packet.stream = stream
                out.mux(packet)
    return Path(target)
