"""Per batch, what each video's record holds for the run report: its timing and its strip.

The :class:`~dj_ops.ops.sample_builder.SampleBuilder` of a batch owns one :class:`ReportFields`
and tells it what happens to each video (decoded, generated, finished; a long video's windows);
the record's ``timing`` and ``thumbnail`` come from :meth:`ReportFields.of`. Strips are made
from frames already decoded (:mod:`dj_ops.video.thumbnails`); a long video's strip is one tile
(its middle frame) from each of at most ``max_frames`` of its windows, evenly spread.
"""

from __future__ import annotations

import time

from dj_ops.video.decode import DecodedVideo
from dj_ops.video.thumbnails import (
    ThumbnailSettings,
    frame_strip,
    strip_of_tiles,
    tile,
    tile_indices,
    wanted,
)

Key = tuple[int, int]  # (row, video) of a slot


class ReportFields:
    """Timing and strips of one batch's videos.

    :param thumbnails: which videos keep a strip (None: none).
    :param timing: record timing (else the records' empty timing: the same every run).
    """

    def __init__(self, thumbnails: ThumbnailSettings | None, timing: bool):
        self.thumbnails, self.timing = thumbnails, timing
        self._timing: dict[Key, dict] = {}
        self._strips: dict[Key, dict] = {}
        self._tiles: dict[Key, dict[int, tuple]] = {}  # window index -> (tile, its time)

    def of(self, key: Key) -> dict:
        """The video's record fields ``timing`` and ``thumbnail`` (VideoOutcome's)."""
        return {"timing": self._timing.get(key, {}), "thumbnail": self._strips.get(key)}

    def _wants_strip(self, path: str) -> bool:
        return self.thumbnails is not None and wanted(path, self.thumbnails.share)

    def decoded(self, key: Key, path: str, video: DecodedVideo) -> None:
        if self.timing:
            self._timing.setdefault(key, {})["decode_s"] = video.decode_s
        if self._wants_strip(path):
            strip = frame_strip(video.frames, video.timestamps, self.thumbnails)
            if strip is not None:
                self._strips[key] = strip

    def generated(self, key: Key, seconds: float) -> None:
        """Add ``seconds`` (a share of a backend call's) to the video's generation time."""
        if self.timing:
            timing = self._timing.setdefault(key, {})
            timing["generate_s"] = timing.get("generate_s", 0.0) + seconds

    def finished(self, key: Key) -> None:
        if self.timing:
            self._timing.setdefault(key, {})["finished"] = time.time()

    def window(self, key: Key, path: str, window) -> None:
        """One window of a long video (a ``WindowVideo``): a tile of its strip, when it is one
        of the windows the strip shows."""
        if (not self._wants_strip(path) or window.error is not None or not len(window.frames)
                or window.window.index not in tile_indices(window.window_count,
                                                           self.thumbnails.max_frames)):
            return
        middle = len(window.frames) // 2
        self._tiles.setdefault(key, {})[window.window.index] = (
            tile(window.frames[middle], self.thumbnails.height), window.timestamps[middle])

    def windows_done(self, key: Key) -> None:
        """A long video's windows are all in: its strip from their tiles."""
        tiles = self._tiles.pop(key, {})
        if tiles:
            order = sorted(tiles)
            strip = strip_of_tiles([tiles[i][0] for i in order], [tiles[i][1] for i in order],
                                   self.thumbnails)
            if strip is not None:
                self._strips[key] = strip
