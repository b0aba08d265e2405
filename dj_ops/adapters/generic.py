"""The safe path for a video chat model whose family is in no row of the table.

Such a model is driven by its own chat template and processor through
:class:`~dj_ops.adapters.base.ModelAdapter`: one video per ``generate`` call (nobody knows whether
its processor can stack videos of different frame counts) and frames resized by its processor
(nobody knows whether its vision tower takes a fixed size). Slower than a family of the table,
but it works wherever transformers itself can generate; one log line per process says so.
"""

from __future__ import annotations

from loguru import logger

from dj_ops.adapters.base import ModelAdapter

_NOTED: set[str] = set()  # models already named in this process's log


def note_untested(adapter: ModelAdapter, model: str, identity: list[str]) -> bool:
    """Log once per process and model that ``model`` takes the generic path; whether it does."""
    if type(adapter) is not ModelAdapter:
        return False
    if model not in _NOTED:
        _NOTED.add(model)
        family = identity[0] if identity else "unknown"
        logger.info(f"{model}: model family {family!r} is not in dj_ops' family table; "
                    "captioning one video per generate call with frames resized by its own "
                    "processor (slower, but safe; see the README's 'Model families')")
    return True
