"""``model_params`` parsed once: the family's keys apart from what the backend's loader gets.

The op's ``model_params`` mixes keys for the model family's adapter (``model_type``,
``template_version``), processor options (``processor_kwargs``), the quantization mode, and the
loader's own options (``from_pretrained`` keyword arguments, vLLM engine arguments, OpenAI server
settings). ``parse_model_params`` (in :mod:`dj_ops.adapters.registry`, whose table decides which
keys are the adapters') splits them once into a :class:`ModelParams`; every backend and the
adapter registry read its parts (``BackendConfig.params``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dj_ops.backends.quantization import QUANTIZATION_KEY

# model_params key holding processor options (``videos_kwargs`` / vLLM ``mm_processor_kwargs``).
PROCESSOR_KWARGS_KEY = "processor_kwargs"


@dataclass(frozen=True)
class ModelParams:
    """The parts of ``model_params``.

    :param adapter: the keys the model family's adapter reads (never given to a loader).
    :param backend: every other key, as given (the OpenAI backend's server settings).
    """

    adapter: dict[str, Any] = field(default_factory=dict)
    backend: dict[str, Any] = field(default_factory=dict)

    @property
    def processor_kwargs(self) -> dict[str, Any]:
        """The user's processor options (they win over the family's)."""
        return dict(self.backend.get(PROCESSOR_KWARGS_KEY) or {})

    @property
    def quantization(self) -> str | None:
        return self.backend.get(QUANTIZATION_KEY)

    @property
    def loader(self) -> dict[str, Any]:
        """What the loader gets: ``from_pretrained`` keyword arguments or vLLM engine arguments
        (a copy; processor options and the quantization mode aside)."""
        return {k: v for k, v in self.backend.items()
                if k not in (PROCESSOR_KWARGS_KEY, QUANTIZATION_KEY)}

