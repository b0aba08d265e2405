"""The one exception raised for a video that cannot be decoded, with a machine-readable kind."""

from __future__ import annotations

MISSING_FILE = "missing_file"
EMPTY_FILE = "empty_file"
NOT_A_VIDEO = "not_a_video"
DECODE_ERROR = "decode_error"
TIMEOUT = "timeout"
UNSUPPORTED_URL = "unsupported_url"

ERROR_KINDS = (
    MISSING_FILE,
    EMPTY_FILE,
    NOT_A_VIDEO,
    DECODE_ERROR,
    TIMEOUT,
    UNSUPPORTED_URL,
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
