"""What CogVLM2-Llama3-Caption's remote code needs from the environment it runs in, checked
before it is loaded.

:data:`REMOTE_CODE_IMPORTS` lists the modules its four files import at their top level, each with
the files importing it: facts read on 2026-12-06 from public copies of those files
(``modeling_cogvlm.py`` in csbhr/Vivid-VR, ``VRDiT/cogvlm2-llama3-caption/``, where the hub
file's ``from pytorchvideo.transforms import ShortSideScale`` line is commented out and the class
inlined; ``visual.py``, ``util.py`` and ``configuration_cogvlm.py`` vendored in
Alwaysssssss/sglang, ``.../caption_sidecar_backend/cogvlm2_vendor/``). The files themselves are
not kept here. transformers checks the top-level names when it loads remote code
(``dynamic_module_utils.check_imports``: ``import x`` and ``from x import`` lines outside
``try`` blocks); executing the file then needs the full dotted paths, which is what
:func:`missing_modules` imports.

``util.py``'s rotary embedding is a triton kernel that asserts a CUDA or XPU tensor: a checkpoint
whose code imports triton cannot run on a CPU (:func:`refuse_device`). triton comes with CUDA
builds of torch; it is required here only where torch is one.

Command line: ``python -m dj_ops_cogvlm2_server.remote_code`` prints each module and whether it
imports, and exits 1 when one is missing (``setup_env.sh`` runs it last).
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

from dj_ops_cogvlm2_server.compat import provide_functional_tensor

MODELING, UTIL, VISUAL, CONFIGURATION = ("modeling_cogvlm.py", "util.py", "visual.py",
                                         "configuration_cogvlm.py")
REMOTE_CODE_IMPORTS: dict[str, tuple[str, ...]] = {
    "argparse": (VISUAL,),
    "einops": (MODELING, UTIL),
    "math": (MODELING, VISUAL),
    "numpy": (MODELING,),
    "pytorchvideo.transforms": (MODELING,),  # ShortSideScale, in the hub's file
    "torch": (MODELING, UTIL, VISUAL),
    "torch.nn": (MODELING, VISUAL),
    "torch.nn.functional": (UTIL, VISUAL),
    "torchvision": (MODELING,),
    "torchvision.transforms": (MODELING,),
    "torchvision.transforms._transforms_video": (MODELING,),  # NormalizeVideo, CenterCropVideo
    "transformers": (MODELING, VISUAL, CONFIGURATION),
    "transformers.activations": (MODELING, VISUAL),
    "transformers.modeling_outputs": (MODELING,),
    "transformers.utils.logging": (MODELING,),
    "triton": (UTIL,),
    "triton.language": (UTIL,),
    "typing": (MODELING, UTIL, CONFIGURATION),
    "warnings": (MODELING,),
}
# Imported only in the ``import x as y`` form, which transformers' check does not see (its
# pattern is ``import x`` alone on a line); executing the file needs them all the same.
ALIASED_ONLY = frozenset({"numpy", "torch.nn.functional", "triton.language"})
CUDA_ONLY_PACKAGE = "triton"  # its kernels run on CUDA/XPU tensors; CPU builds of torch lack it


def top_level_names(modules) -> set[str]:
    """The top-level package of each dotted module name."""
    return {module.split(".")[0] for module in modules}


def checked_names() -> set[str]:
    """The top-level names transformers' ``check_imports`` finds in the real files."""
    return top_level_names(m for m in REMOTE_CODE_IMPORTS if m not in ALIASED_ONLY)


def required_modules(cuda: bool) -> list[str]:
    """The listed modules this environment must import: triton's only with a CUDA torch."""
    return [m for m in REMOTE_CODE_IMPORTS
            if cuda or m.split(".")[0] != CUDA_ONLY_PACKAGE]


def torch_has_cuda() -> bool:
    """Whether the installed torch is a CUDA build (a GPU need not be present)."""
    import torch

    return torch.version.cuda is not None


def missing_modules(modules: list[str]) -> dict[str, str]:
    """Each module of ``modules`` that does not import, with the error (the legacy torchvision
    name pytorchvideo needs is provided first, as the server does)."""
    provide_functional_tensor()
    missing = {}
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as error:  # an import can fail with more than ImportError
            missing[module] = f"{type(error).__name__}: {error}"
    return missing


def code_files(model: str) -> dict[str, Path]:
    """The checkpoint's remote-code files, as transformers resolves them: the modules named in
    ``config.json``'s ``auto_map`` and, recursively, their relative imports (a local folder, or
    a hub id whose files are fetched into the Hugging Face cache). Empty without ``auto_map``."""
    from transformers.dynamic_module_utils import get_relative_imports
    from transformers.utils import cached_file

    config = json.loads(Path(cached_file(model, "config.json")).read_text())
    refs = [ref for value in (config.get("auto_map") or {}).values()
            for ref in (value if isinstance(value, list) else [value]) if ref]
    pending = [ref.split("--")[-1].rsplit(".", 1)[0] for ref in refs]
    files: dict[str, Path] = {}
    while pending:
        name = f"{pending.pop()}.py"
        if name not in files:
            files[name] = Path(cached_file(model, name))
            pending.extend(get_relative_imports(files[name]))
    return files


def code_imports(files: dict[str, Path]) -> dict[str, list[str]]:
    """Each file's top-level imports, by transformers' own parser (``get_imports``, the list
    ``check_imports`` tries)."""
    from transformers.dynamic_module_utils import get_imports

    return {name: sorted(get_imports(path)) for name, path in sorted(files.items())}


def refuse_device(model: str, device: str, files: dict[str, Path] | None = None) -> None:
    """Refuse to run on a CPU a checkpoint whose remote code imports triton.

    :raises ValueError: saying why and what to do.
    """
    if device.startswith(("cuda", "xpu")):
        return
    files = code_files(model) if files is None else files
    users = [name for name, names in code_imports(files).items() if CUDA_ONLY_PACKAGE in names]
    if users:
        raise ValueError(
            f"{model} cannot run on {device}: its remote code ({', '.join(users)}) imports "
            f"triton, and its rotary embedding is a triton kernel that accepts only CUDA (or "
            f"XPU) tensors. Serve it on a CUDA GPU (--device cuda), from the environment of "
            f"the README's GPU setup: TORCH_SPEC=\"torch==2.1.0 torchvision==0.16.0\" bash "
            f"servers/cogvlm2/setup_env.sh")


def main() -> None:
    cuda = torch_has_cuda()
    modules = required_modules(cuda)
    missing = missing_modules(modules)
    for module in modules:
        print(f"{module:45s} {missing.get(module, 'ok')}")
    if not cuda:
        print(f"{CUDA_ONLY_PACKAGE:45s} not required: torch is a CPU build (the real "
              f"checkpoint cannot run on a CPU)")
    if missing:
        sys.exit(f"missing {sorted(missing)}: run servers/cogvlm2/setup_env.sh")


if __name__ == "__main__":
    main()
