"""What a benchmark runs: the requests (videos), the model, and the op's settings, so that
the op and the baseline do exactly the same work (same frames, same generated tokens)."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from data_juicer.utils.mm_utils import SpecialTokens

from dj_ops.captioning.samples import as_columns, one_video_sample
from dj_ops.testing.clips import sample_videos
from dj_ops.testing.tiny_models import tiny_model_path
from dj_ops.video import FrameSettings

PROMPT = "Describe the input video in 1-2 sentences."
REQUESTS_DIR = Path(tempfile.gettempdir()) / "dj_ops_bench_requests"


@dataclass(frozen=True)
class Workload:
    """One benchmark configuration.

    :param requests: videos to caption (the sample clips repeated, each under its own path).
    :param caption_num: candidates per video.
    :param new_tokens: tokens generated per caption, exactly (``min_new_tokens`` is set to the
        same value: random weights would otherwise stop at arbitrary places).
    :param generation_batch_size: the op's videos per ``generate`` call.
    :param op_batch_size: samples per Data-Juicer batch (per ``process_batched`` call); None:
        the op's default (``16 * generation_batch_size``).
    :param torch_threads: the op's ``torch_threads`` (None: its default).
    :param frames: frame parameters of the op; empty: its defaults (fps 2, 4 to 32 frames, at
        most 448 x 448 pixels per frame).
    :param model: checkpoint path (default: the tiny random-weight Qwen3-VL).
    """

    requests: int
    caption_num: int = 1
    new_tokens: int = 128
    generation_batch_size: int = 8
    op_batch_size: int | None = None
    torch_threads: int | None = None
    frames: dict[str, Any] = field(default_factory=dict)
    model: str = ""
    seed: int = 0

    def model_path(self) -> str:
        return self.model or tiny_model_path("qwen3_vl")

    def sampling_params(self) -> dict[str, int]:
        return {"max_new_tokens": self.new_tokens, "min_new_tokens": self.new_tokens}

    def op_params(self) -> dict[str, Any]:
        """Keyword arguments of ``VLMVideoCaptioningMapper`` for this workload."""
        params = {
            "hf_model": self.model_path(), "caption_num": self.caption_num,
            "keep_candidate_mode": "random_any", "keep_original_sample": False,
            "prompt": PROMPT, "sampling_params": self.sampling_params(),
            "generation_batch_size": self.generation_batch_size, "seed": self.seed,
            "num_proc": 1,  # the benchmarks run it in their own process, alone
            **self.frames,
        }  # fmt: skip
        if self.op_batch_size is not None:
            params["batch_size"] = self.op_batch_size
        if self.torch_threads is not None:
            params["torch_threads"] = self.torch_threads
        return params

    def frame_settings(self, size_factor: int | None) -> FrameSettings:
        """The frames the op samples for this workload, from its public frame parameters (the
        op's defaults for those unset), at the backend's patch factor."""
        names = {"frame_strategy": "strategy"}
        settings = FrameSettings(**{names.get(k, k): v for k, v in self.frames.items()})
        return replace(settings, size_factor=size_factor) if size_factor else settings

    def describe(self) -> dict[str, Any]:
        return {"requests": self.requests, "caption_num": self.caption_num,
                "new_tokens": self.new_tokens, "generation_batch_size": self.generation_batch_size,
                "op_batch_size": self.op_batch_size or "op default",
                "torch_threads": self.torch_threads or "op default",
                "frames": self.frames or "op defaults"}


def cycled(items: Sequence[Any], count: int) -> list[Any]:
    """``items`` repeated in order up to ``count`` entries.

    >>> cycled(["a", "b"], 5)
    ['a', 'b', 'a', 'b', 'a']
    """
    if not items:
        raise ValueError("no items to cycle")
    return [items[i % len(items)] for i in range(count)]


def request_paths(count: int, folder: Path = REQUESTS_DIR,
                  videos: Sequence[Path] | None = None) -> list[str]:
    """``count`` distinct paths, each a link to one of the sample clips in turn.

    Distinct paths keep the op from decoding a repeated video once for several requests of a
    batch: every request costs one decode, for the op as for the baseline.
    """
    videos = list(videos or sample_videos())
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, video in enumerate(cycled(videos, count)):
        link = folder / f"r{index:04d}_{Path(video).name}"
        if not link.is_symlink() or link.resolve() != Path(video).resolve():
            link.unlink(missing_ok=True)
            link.symlink_to(Path(video).resolve())
        paths.append(str(link))
    return paths


def samples_for(paths: Sequence[str]) -> dict[str, list]:
    """A Data-Juicer batch (dict of lists) with one single-video sample per path."""
    return as_columns([one_video_sample(p, SpecialTokens.video, SpecialTokens.eoc)
                       for p in paths])


def batches(paths: Sequence[str], size: int) -> list[list[str]]:
    """``paths`` cut into consecutive batches of at most ``size``.

    >>> batches(["a", "b", "c"], 2)
    [['a', 'b'], ['c']]
    """
    return [list(paths[i : i + size]) for i in range(0, len(paths), size)]


def caption_all(op, paths: Sequence[str]) -> list[dict]:
    """The op's video records (``generated_tokens``, ``timestamps``, ...) for ``paths``, run in
    Data-Juicer batches of the op's ``batch_size``.

    :raises RuntimeError: when a video is not captioned (a benchmark must not time failures).
    """
    from data_juicer.utils.constant import Fields

    from dj_ops.captioning.records import META_KEY

    videos = []
    for batch in batches(paths, op.batch_size):
        out = op.process(samples_for(batch))
        for meta in out[Fields.meta]:
            record = meta[META_KEY]
            if record["status"] != "captioned":
                raise RuntimeError(f"the op failed on a benchmark video: {record}")
            videos.extend(record["videos"])
    return videos
