"""The install helpers' pure parts: the lower bounds CI installs come from pyproject.toml (and
leave the torch pair to constraints.txt); the versions line names what is installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lower_bound_pins_follow_pyproject_and_skip_the_constrained(tmp_path):
    bounds = load("lower_bounds")
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\ndependencies = ["a>=1.2", "b", "Torch>=2.4", "c>=3,<4"]\n')
    assert bounds.lower_bound_pins(pyproject, {"torch"}) == ["a==1.2", "c==3"]
    skip = bounds.constrained(ROOT / "constraints.txt")
    assert {"torch", "torchvision"} <= skip
    pins = bounds.lower_bound_pins(ROOT / "pyproject.toml", skip)
    assert {pin.split("==")[0] for pin in pins} >= {"transformers", "py-data-juicer", "av"}
    assert not any(pin.startswith("torch") for pin in pins)


def test_the_versions_line_names_installed_packages():
    found = load("versions").installed()
    assert {"transformers", "torch", "py-data-juicer", "datasets", "av"} <= set(found)
