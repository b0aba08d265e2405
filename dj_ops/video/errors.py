"""The one exception raised for a video that cannot be read, with a machine-readable kind,
and the checks on a path that can be made before opening it."""

from __future__ import annotations

import os
import re

MISSING_FILE = "missing_file"
EMPTY_FILE = "empty_file"
NOT_A_VIDEO = "not_a_video"
DECODE_ERROR = "decode_error"
TIMEOUT = "timeout"
UNSUPPORTED_URL = "unsupported_url"
# even at min_frames and min_pixels the video takes more tokens than its budget (video/budget.py)
CONTEXT_LENGTH = "context_length"

ERROR_KINDS = (
    MISSING_FILE,
    EMPTY_FILE,
    NOT_A_VIDEO,
    DECODE_ERROR,
    TIMEOUT,
    UNSUPPORTED_URL,
    CONTEXT_LENGTH,
)

URL_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# Leading bytes of containers that hold video: a file that starts like one but does not
# open is damaged (decode_error); anything else is not a video (not_a_video).
CONTAINER_SIGNATURES = (
    (4, b"ftyp"),  # mp4, mov, m4v, 3gp
    (0, b"\x1a\x45\xdf\xa3"),  # matroska, webm
    (0, b"RIFF"),  # avi
    (0, b"FLV"),
)


class VideoError(Exception):
    """A video could not be read.

    :param kind: one of :data:`ERROR_KINDS` (``missing_file``, ``empty_file``,
        ``not_a_video``, ``decode_error``, ``timeout``, ``unsupported_url``), meant to be
        recorded on the sample.
    :param message: what went wrong, for people.
    :param path: the video concerned.
    """

    def __init__(self, kind: str, message: str, path: str | None = None) -> None:
        if kind not in ERROR_KINDS:
            raise ValueError(f"kind must be one of {list(ERROR_KINDS)}, got {kind!r}")
        super().__init__(f"{kind}: {message}" + (f" ({path})" if path else ""))
        self.kind = kind
        self.message = message
        self.path = path

    def __reduce__(self):
        """Pickle by the constructor's arguments (it travels back from decoding processes)."""
        return (type(self), (self.kind, self.message, self.path))


def check_local_path(path: str) -> None:
    """Raise :class:`VideoError` for a URL, a missing, non-regular or empty file."""
    if URL_PATTERN.match(path):
        raise VideoError(
            UNSUPPORTED_URL,
            "remote videos (http(s)://, s3://, ...) are not supported yet; "
            "download the file and pass its local path",
            path,
        )
    if not os.path.exists(path):
        raise VideoError(MISSING_FILE, "no such file", path)
    if not os.path.isfile(path):
        raise VideoError(NOT_A_VIDEO, "not a regular file", path)
    if os.path.getsize(path) == 0:
        raise VideoError(EMPTY_FILE, "the file is empty (0 bytes)", path)


def looks_like_video_container(path: str) -> bool:
    """Whether the file starts like a known video container (mp4/mov, mkv/webm, avi, flv)."""
    with open(path, "rb") as file:
        head = file.read(16)
    return any(head[at : at + len(magic)] == magic for at, magic in CONTAINER_SIGNATURES)


def describe_error(error: Exception) -> str:
    """``error`` for people: FFmpeg's (and the OS's) own words without the raw error number
    and the path. PyAV's ``str()`` reads ``[Errno 1094995529] Invalid data found when
    processing input: '/a.mp4'``, the number being FFmpeg's AVERROR_INVALIDDATA tag."""
    reason = getattr(error, "strerror", None)
    return reason if isinstance(reason, str) and reason else str(error)


def open_error(path: str, error: Exception) -> VideoError:
    """The error for a file no decoder can open: ``decode_error`` when it starts like a video
    container (damaged), else ``not_a_video``."""
    if looks_like_video_container(path):
        return VideoError(DECODE_ERROR, f"the container is damaged: {describe_error(error)}",
                          path)
    return VideoError(NOT_A_VIDEO, "FFmpeg recognises no audio or video format in it "
                      f"({describe_error(error)})", path)
