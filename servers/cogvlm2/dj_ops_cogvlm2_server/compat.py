"""The one name the real checkpoint's imports miss on a current torchvision.

CogVLM2-Llama3-Caption's modeling file imports ``pytorchvideo.transforms``; pytorchvideo 0.1.5
(its last release) imports ``torchvision.transforms.functional_tensor``, which torchvision 0.17
renamed to ``torchvision.transforms._functional_tensor``, same functions. With the model card's
torchvision 0.16 the old name exists and nothing is done; with a newer one the old name is made
an alias of the new module before the remote code is imported (in this process only), rather
than pinning the whole environment to torch 2.1.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

LEGACY_MODULE = "torchvision.transforms.functional_tensor"
RENAMED_MODULE = "torchvision.transforms._functional_tensor"


def provide_functional_tensor() -> str | None:
    """Make :data:`LEGACY_MODULE` importable. Returns ``'torchvision'`` when torchvision has it
    itself, ``'alias'`` when it now names the renamed module, None without torchvision."""
    try:
        if importlib.util.find_spec(LEGACY_MODULE) is not None:
            return "torchvision"
        module = importlib.import_module(RENAMED_MODULE)
    except ImportError:
        return None
    sys.modules[LEGACY_MODULE] = module
    sys.modules["torchvision.transforms"].functional_tensor = module
    return "alias"
