"""Every console script declared in pyproject.toml resolves to a callable."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
SCRIPTS = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_console_script_target_exists(name):
    module, function = SCRIPTS[name].split(":")
    assert callable(getattr(importlib.import_module(module), function))


def test_documented_commands_are_declared():
    assert {"dj-ops-caption", "dj-ops-export-cogvideox"} <= set(SCRIPTS)
