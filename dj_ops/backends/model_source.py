"""Where ``hf_model`` points: a local checkpoint folder or a Hugging Face model id.

Checked before any loader sees it, because the Hub client's answer to a mistyped local folder
is about repository ids (``Repo id must be in the form 'repo_name' or
'namespace/repo_name' ... Use `repo_type` argument``), which sends a user the wrong way.
"""

from __future__ import annotations

import os

CONFIG_FILE = "config.json"


def looks_like_local_path(model: str) -> bool:
    """Whether ``model`` can only be a path: absolute, ``./``, ``../`` or ``~``-relative,
    with a backslash or a trailing slash, or more than one ``/`` (a model id has at most one:
    ``namespace/name``)."""
    return (os.path.isabs(model) or model.startswith((".", "~")) or "\\" in model
            or model.endswith("/") or model.count("/") > 1)


def local_model_problem(model: str) -> str | None:
    """What is wrong with ``model`` as a local checkpoint, or None when it is a folder holding
    ``config.json`` or when it may be a model id (left to the Hub client)."""
    path = os.path.expanduser(model)
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, CONFIG_FILE)):
            return None
        return (f"hf_model={model!r} is a folder but holds no {CONFIG_FILE}: give the folder "
                "of the checkpoint itself (the one with config.json and the weights)")
    if os.path.exists(path):
        return f"hf_model={model!r} is a file; give the checkpoint's folder"
    if looks_like_local_path(model):
        return (f"hf_model={model!r}: no such folder ({os.path.abspath(path)}). Give the folder "
                "of a local checkpoint, or a Hugging Face model id such as "
                "'Qwen/Qwen3-VL-8B-Instruct'")
    return None


def check_model_source(model: str) -> None:
    """:raises ValueError: when ``model`` names a local checkpoint that is not there."""
    problem = local_model_problem(model)
    if problem:
        raise ValueError(problem)
