"""A generated corpus of bad and unusual inputs, each with the outcome the op must record.

:func:`build_fault_corpus` writes small files into a folder and returns one :class:`FaultCase`
per sample: its videos (paths or URLs), its text and prompt, and the error kind the op must
record on it ("" when it must be captioned). Every case is built from scratch in well under
a second, except the 4000x3000 clip (about one second).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from data_juicer.utils.mm_utils import SpecialTokens

from dj_ops.testing.clips import make_clip, write_bytes

CAPTIONED = ""  # expected kind of a case that must be captioned
UNTOUCHED = None  # expected kind of a case without videos: passed through, no record
PROMPT_FIELD = "prompt"  # run the corpus with prompt_key=PROMPT_FIELD
PROMPT = "Describe the video."
VFR_TIMES = (0.0, 0.1, 0.15, 0.4, 1.0, 1.05, 1.1, 2.0)
HTML_PAGE = b"<!DOCTYPE html><html><head><title>403 Forbidden</title></head></html>\n"


@dataclass(frozen=True)
class FaultCase:
    """One sample of the corpus and what the op must make of it.

    :param name: the fault.
    :param videos: the sample's video paths or URLs.
    :param expected_kind: the error kind recorded on the sample, "" (:data:`CAPTIONED`) when
        it is captioned, None (:data:`UNTOUCHED`) when it has no videos and passes through.
    :param text: the sample text; None: one video token per video, then an eoc.
    :param prompt: the per-sample prompt (None: the field is missing).
    """

    name: str
    videos: tuple[str, ...]
    expected_kind: str | None
    text: str | None = None
    prompt: str | None = PROMPT

    def sample(self) -> dict:
        """The Data-Juicer sample (``text``, ``videos``, ``prompt``)."""
        text = self.text
        if text is None:
            text = f"{SpecialTokens.video * len(self.videos)} {self.name} {SpecialTokens.eoc}"
        sample = {"text": text, "videos": list(self.videos), "name": self.name}
        if self.prompt is not None:
            sample[PROMPT_FIELD] = self.prompt
        return sample


def _cut_in_half(source: Path, target: Path) -> Path:
    return write_bytes(target, source.read_bytes()[: source.stat().st_size // 2])


def _overwrite_after(source: Path, target: Path, marker: bytes, fill: int, stop: bytes = b""):
    """Copy ``source`` with the bytes after the box ``marker`` (up to box ``stop``, 8 bytes
    before it) overwritten with ``fill``: a damaged index or damaged frames."""
    data = bytearray(source.read_bytes())
    start = data.find(marker) + len(marker)
    end = data.find(stop) - 8 if stop else len(data)
    data[start:end] = bytes([fill]) * (end - start)
    return write_bytes(target, bytes(data))


def _audio_only(path: Path) -> Path:
    """An mp4 holding one AAC stream and no video."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), "fltp", "mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


def _a_directory(path: Path) -> Path:
    path.mkdir(exist_ok=True)
    return path


# name -> (writer of the sample's files in a folder, expected kind)
FILE_FAULTS: dict[str, tuple[Callable[[Path], list[Path | str]], str]] = {
    "missing_file": (lambda d: [d / "does not exist.mp4"], "missing_file"),
    "zero_bytes": (lambda d: [write_bytes(d / "zero.mp4", b"")], "empty_file"),
    "truncated_index_at_end": (
        lambda d: [_cut_in_half(make_clip(d / "src_a.mp4", 5, 10), d / "truncated.mp4")],
        "decode_error"),
    "truncated_faststart": (
        lambda d: [_cut_in_half(make_clip(d / "src_b.mp4", 5, 10, faststart=True),
                                d / "truncated_fs.mp4")], "decode_error"),
    "corrupt_index": (
        lambda d: [_overwrite_after(make_clip(d / "src_c.mp4", 2, 10), d / "bad_moov.mp4",
                                    b"moov", 0xFF)], "decode_error"),
    "corrupt_frames": (
        lambda d: [_overwrite_after(make_clip(d / "src_d.mp4", 2, 10), d / "bad_mdat.mp4",
                                    b"mdat", 0x00, stop=b"moov")], "decode_error"),
    "text_as_mp4": (lambda d: [write_bytes(d / "notes.mp4", b"not a video\n" * 40)],
                    "not_a_video"),
    "html_as_mp4": (lambda d: [write_bytes(d / "page.mp4", HTML_PAGE)], "not_a_video"),
    "audio_only": (lambda d: [_audio_only(d / "audio_only.mp4")], "not_a_video"),
    "directory": (lambda d: [_a_directory(d / "folder.mp4")], "not_a_video"),
    "http_url": (lambda d: ["https://example.com/videos/a.mp4"], "unsupported_url"),
    "s3_url": (lambda d: ["s3://bucket/videos/a.mp4"], "unsupported_url"),
    "one_frame": (lambda d: [make_clip(d / "one_frame.mp4", 0.1, 10)], CAPTIONED),
    "under_one_second": (lambda d: [make_clip(d / "half_second.mp4", 0.5, 10)], CAPTIONED),
    "huge_resolution": (lambda d: [make_clip(d / "huge.mp4", 0.2, 10, 4000, 3000)], CAPTIONED),
    "long_video": (lambda d: [make_clip(d / "long.mp4", 300, 2, 32, 32)], CAPTIONED),
    "variable_frame_rate": (
        lambda d: [make_clip(d / "vfr.mp4", fps=10, frame_times=VFR_TIMES)], CAPTIONED),
    "rotation": (lambda d: [make_clip(d / "rotated.mp4", 1, 10, 64, 48, rotation=90)],
                 CAPTIONED),
    "spaces_and_unicode": (
        lambda d: [make_clip(d / "my clip ünïcødé 视频 (1).mp4", 1, 10)], CAPTIONED),
    "good_and_missing": (lambda d: [make_clip(d / "good.mp4", 1, 10), d / "gone.mp4"],
                         "missing_file"),
}


def _sample_faults(good: str) -> list[FaultCase]:
    """Faults of the sample rather than of a file, on a good video."""
    v, e = SpecialTokens.video, SpecialTokens.eoc
    return [
        FaultCase("duplicate_in_sample", (good, good), CAPTIONED),
        FaultCase("duplicate_across_samples_1", (good,), CAPTIONED),
        FaultCase("duplicate_across_samples_2", (good,), CAPTIONED),
        FaultCase("tokens_disagree_with_videos", (good, good), "token_video_mismatch",
                  text=f"{v} one token, two videos {e}"),
        FaultCase("blank_prompt", (good,), "invalid_prompt", prompt="   "),
        FaultCase("missing_prompt", (good,), "invalid_prompt", prompt=None),
        FaultCase("bare_video_list", (good,), CAPTIONED, text="no video token"),
        FaultCase("no_videos", (), UNTOUCHED, text="text only"),
    ]


def build_fault_corpus(folder: str | os.PathLike) -> list[FaultCase]:
    """Write the corpus into ``folder``; one case per file fault, then the sample faults."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cases = [
        FaultCase(name, tuple(str(p) for p in write(folder)), kind)
        for name, (write, kind) in FILE_FAULTS.items()
    ]
    good = str(make_clip(folder / "shared_good.mp4", 1, 10))
    return cases + _sample_faults(good)
