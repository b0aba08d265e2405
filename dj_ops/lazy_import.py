"""Import a registered ``module:attribute`` path only when it is chosen, so that optional
dependencies (vLLM, decord, torchcodec, ...) load only for the users who pick them."""

from __future__ import annotations

import importlib


def load_entry(path: str, *, what: str, extra: str = ""):
    """The attribute named by ``path`` (``"package.module:name"``).

    :param what: what the entry is, for the error message (``"the 'decord' decoder"``).
    :param extra: the pip extra providing its optional dependency ("" for none).
    :raises ModuleNotFoundError: when a package is missing, naming the pip extra to install.
    """
    module_name, attribute = path.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        hint = f'pip install "dj-ops[{extra}]"' if extra else "pip install dj-ops"
        raise ModuleNotFoundError(
            f"{what} needs the package {error.name!r}: {hint}", name=error.name
        ) from error
    return getattr(module, attribute)
