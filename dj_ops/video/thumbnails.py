"""A small strip of the frames a model saw, made from frames already decoded (pure).

The run report (:mod:`dj_ops.report`) shows, beside each caption, the frames the caption was
generated from. Decoding a video again for that would cost as much as captioning's own decoding,
so the strip is made where the sampled frames are already in memory (the op, once a video is
decoded: :meth:`dj_ops.ops.sample_builder.SampleBuilder.note_frames`): a few of them, evenly
spread, shrunk by an integer factor (Pillow's box ``reduce``, about 0.4 ms a frame here against
1.3 ms for a bilinear ``resize``), side by side in one JPEG. Its size is bounded: at most
``max_frames`` tiles of at most ``height`` pixels, and at most ``max_bytes`` of JPEG (lower
quality, then fewer tiles, until it fits).

Which videos get one is decided by a hash of the path (:func:`wanted`): the same videos on every
run and in every process, whatever the order of batches, with no state to share.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
from dataclasses import dataclass

import numpy as np

DEFAULT_MAX_FRAMES = 8  # tiles per strip
DEFAULT_HEIGHT = 64  # pixels, at most, per tile
DEFAULT_MAX_BYTES = 24_000  # JPEG bytes, at most, per strip (32 kB as base64)
JPEG_QUALITIES = (70, 50, 30)  # tried in turn while the strip is over max_bytes


@dataclass(frozen=True)
class ThumbnailSettings:
    """Which videos get a strip and how large it may be.

    :param share: share of videos (0..1) whose strip is kept; 0 (the default) makes none.
    :param max_frames: most tiles per strip.
    :param height: most pixels per tile, vertically (frames shrink by a whole factor).
    :param max_bytes: most JPEG bytes per strip.
    """

    share: float = 0.0
    max_frames: int = DEFAULT_MAX_FRAMES
    height: int = DEFAULT_HEIGHT
    max_bytes: int = DEFAULT_MAX_BYTES

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"thumbnails must be a share of videos between 0 and 1 (0: none, "
                             f"1: every video), got {self.share}")
        if self.max_frames < 1 or self.height < 8 or self.max_bytes < 1024:
            raise ValueError("thumbnail strips need max_frames >= 1, height >= 8 and "
                             "max_bytes >= 1024")

    @property
    def enabled(self) -> bool:
        return self.share > 0.0


def wanted(path: str, share: float) -> bool:
    """Whether the video at ``path`` gets a strip: a stable share of paths (by hash).

    >>> wanted("a.mp4", 0.0), wanted("a.mp4", 1.0)
    (False, True)
    """
    if share <= 0.0:
        return False
    if share >= 1.0:
        return True
    digest = hashlib.blake2b(path.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < share


def tile_indices(count: int, max_frames: int) -> list[int]:
    """Up to ``max_frames`` indices of ``count`` frames, evenly spread, first and last kept.

    >>> tile_indices(10, 4), tile_indices(3, 8), tile_indices(0, 8)
    ([0, 3, 6, 9], [0, 1, 2], [])
    """
    if count <= max_frames:
        return list(range(count))
    return [round(i * (count - 1) / (max_frames - 1)) for i in range(max_frames)] \
        if max_frames > 1 else [0]


def tile(frame: np.ndarray, height: int) -> np.ndarray:
    """One frame (``(H, W, 3)`` uint8) shrunk by the whole factor that brings it to at most
    ``height`` pixels (Pillow's box ``reduce``)."""
    from PIL import Image  # Pillow comes with transformers' image processing

    factor = max(1, math.ceil(frame.shape[0] / height))
    return np.asarray(Image.fromarray(frame).reduce(factor))


def frame_strip(frames: np.ndarray, timestamps, settings: ThumbnailSettings) -> dict | None:
    """The strip of ``frames`` (``(T, H, W, 3)`` uint8, as decoded) for a record.

    :returns: ``image`` (base64 JPEG), ``timestamps`` (seconds of the tiles, left to right),
        ``width`` and ``height`` (of one tile); None when there are no frames, or when even one
        tile does not fit ``max_bytes``.
    """
    count = 0 if frames is None or frames.ndim != 4 else frames.shape[0]
    if count == 0 or frames.shape[1] == 0 or frames.shape[2] == 0:
        return None
    picks = tile_indices(count, settings.max_frames)
    times = np.asarray(timestamps, dtype=np.float64)
    tile_times = times[picks] if len(times) == count else np.zeros(len(picks))
    return strip_of_tiles([tile(frames[i], settings.height) for i in picks], tile_times,
                          settings)


def strip_of_tiles(tiles: list[np.ndarray], times, settings: ThumbnailSettings) -> dict | None:
    """Tiles (made by :func:`tile`, at most ``max_frames``) side by side in one JPEG of at most
    ``max_bytes`` (lower quality, then every other tile, until it fits); None if none fits.
    Tiles of another height than the first are scaled to it."""
    from PIL import Image

    if not tiles:
        return None
    height = tiles[0].shape[0]
    tiles = [t if t.shape[0] == height else np.asarray(Image.fromarray(t).resize(
        (max(1, round(t.shape[1] * height / t.shape[0])), height))) for t in tiles]
    times = [float(t) for t in times]
    while True:
        image = _jpeg(np.concatenate(tiles, axis=1), settings.max_bytes)
        if image is not None or len(tiles) == 1:
            break
        keep = tile_indices(len(tiles), max(1, len(tiles) // 2))  # fewer tiles, still spread
        tiles, times = [tiles[i] for i in keep], [times[i] for i in keep]
    if image is None:
        return None
    return {"image": base64.b64encode(image).decode("ascii"),
            "timestamps": np.round(np.asarray(times, dtype=np.float64), 3),
            "width": int(tiles[0].shape[1]), "height": int(height)}


def _jpeg(strip: np.ndarray, max_bytes: int) -> bytes | None:
    """``strip`` as JPEG at the best quality of :data:`JPEG_QUALITIES` within ``max_bytes``."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(strip))
    for quality in JPEG_QUALITIES:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        if buffer.tell() <= max_bytes:
            return buffer.getvalue()
    return None
