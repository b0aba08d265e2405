"""Typed, validated settings for frame sampling and resizing."""

from __future__ import annotations

from dataclasses import dataclass

# Frame defaults: qwen-vl-utils' (``vision_process.py``), the op's parameter defaults.
FPS = 2.0
MIN_FRAMES = 4
MAX_FRAMES = 32
TEMPORAL_FACTOR = 2
MIN_PIXELS = 128 * 28 * 28
MAX_PIXELS = 448 * 448
# Frame sides are multiples of this until a backend declares its model's patch factor
# (CaptionBackend.size_factor); the factor of Qwen2.5-VL patches (14) merged 2 x 2.
DEFAULT_SIZE_FACTOR = 28
# The samplers' names (dj_ops.video.sampling.SAMPLERS): Qwen-VL's and CogVLM2-Llama3-Caption's.
STRATEGIES = ("base", "chat", "fps", "uniform")


def _require(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``condition`` holds."""
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True, kw_only=True)
class FrameSettings:
    """How to pick and resize the frames of one video.

    :param strategy: name of a sampler (:data:`STRATEGIES`): ``fps``,
        ``uniform``, or CogVLM2-Llama3-Caption's ``chat`` (one frame per second, at most 24)
        and ``base`` (24 frames over the first 60 s), which ignore the frame counts below.
    :param fps: frames per second to sample (strategy ``fps``).
    :param min_frames: fewest frames to sample (strategy ``fps``).
    :param max_frames: most frames to sample (strategy ``fps``).
    :param num_frames: exact frame count (strategy ``uniform``).
    :param video_start: start of the window to sample, in seconds (None: video start).
    :param video_end: end of the window to sample, in seconds (None: video end).
    :param min_pixels: fewest pixels per frame after resizing.
    :param max_pixels: most pixels per frame after resizing.
    :param total_pixels: most pixels over all frames of a video (None: no limit).
    :param size_factor: frame sides are multiples of this (28 Qwen2.5-VL, 32 Qwen3-VL).
    :param temporal_factor: the frame count is a multiple of this.
    :param max_visual_tokens: most tokens one video may become (None: no budget); frames,
        then pixels per frame, are cut until it fits (:mod:`dj_ops.video.budget`).
    :param frame_text_tokens: text tokens the prompt gains per temporal group of frames
        besides its vision tokens (Qwen3-VL's timestamps), counted against the budget.
    """

    strategy: str = "fps"
    fps: float = FPS
    min_frames: int = MIN_FRAMES
    max_frames: int = MAX_FRAMES
    num_frames: int | None = None
    video_start: float | None = None
    video_end: float | None = None
    min_pixels: int = MIN_PIXELS
    max_pixels: int = MAX_PIXELS
    total_pixels: int | None = None
    size_factor: int = DEFAULT_SIZE_FACTOR
    temporal_factor: int = TEMPORAL_FACTOR
    max_visual_tokens: int | None = None
    frame_text_tokens: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the allowed values when a field is out of range."""
        self._validate_strategy()
        self._validate_frame_counts()
        self._validate_window()
        self._validate_pixels()

    def _validate_strategy(self) -> None:
        _require(
            self.strategy in STRATEGIES,
            f"strategy must be one of {sorted(STRATEGIES)}, got {self.strategy!r}",
        )
        _require(self.fps > 0, f"fps must be > 0, got {self.fps}")

    def _validate_frame_counts(self) -> None:
        _require(
            self.temporal_factor >= 1,
            f"temporal_factor must be >= 1, got {self.temporal_factor}",
        )
        _require(self.min_frames >= 1, f"min_frames must be >= 1, got {self.min_frames}")
        _require(
            self.min_frames <= self.max_frames,
            f"min_frames ({self.min_frames}) must be <= max_frames ({self.max_frames})",
        )
        _require(
            self.max_frames >= self.temporal_factor,
            f"max_frames must be >= temporal_factor ({self.temporal_factor}), "
            f"got {self.max_frames}",
        )
        if self.strategy == "uniform":
            _require(self.num_frames is not None, "strategy 'uniform' needs num_frames")
        if self.num_frames is not None:
            _require(
                self.num_frames >= 1 and self.num_frames % self.temporal_factor == 0,
                f"num_frames must be a positive multiple of temporal_factor "
                f"({self.temporal_factor}), got {self.num_frames}",
            )

    def _validate_window(self) -> None:
        start, end = self.video_start, self.video_end
        if start is not None:
            _require(start >= 0, f"video_start must be >= 0 seconds, got {start}")
        if end is not None:
            _require(end > 0, f"video_end must be > 0 seconds, got {end}")
        if start is not None and end is not None:
            _require(
                end > start,
                f"video_end ({end}) must be greater than video_start ({start})",
            )

    def _validate_pixels(self) -> None:
        factor = self.size_factor
        _require(factor >= 1, f"size_factor must be >= 1, got {factor}")
        _require(self.min_pixels >= 1, f"min_pixels must be >= 1, got {self.min_pixels}")
        _require(
            self.min_pixels <= self.max_pixels,
            f"min_pixels ({self.min_pixels}) must be <= max_pixels ({self.max_pixels})",
        )
        _require(
            self.max_pixels >= factor * factor,
            f"max_pixels must be >= size_factor**2 ({factor * factor}), got {self.max_pixels}",
        )
        if self.total_pixels is not None:
            _require(
                self.total_pixels >= self.min_pixels,
                f"total_pixels must be >= min_pixels ({self.min_pixels}), got {self.total_pixels}",
            )
        if self.max_visual_tokens is not None:
            _require(self.max_visual_tokens >= 1,
                     f"max_visual_tokens must be >= 1, got {self.max_visual_tokens}")
