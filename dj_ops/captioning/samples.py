"""The Data-Juicer sample of one video, as the command line, the demo and the benchmarks write it.

Its text is the video token ended by an end-of-chunk token, so the captioned sample reads
``<video token> caption <eoc>``. The tokens are parameters (Data-Juicer's ``SpecialTokens``) so
that this stays importable without Data-Juicer (the command line's instant ``--help``).
"""

from __future__ import annotations


def one_video_sample(path: str, video_token: str, eoc_token: str) -> dict:
    """``{"text": "<video> <eoc>", "videos": [path]}``."""
    return {"text": f"{video_token} {eoc_token}", "videos": [path]}


def as_columns(samples: list[dict]) -> dict[str, list]:
    """Samples (dicts with the same keys) as a Data-Juicer batch (a dict of lists)."""
    return {key: [sample[key] for sample in samples] for key in (samples[0] if samples else {})}
