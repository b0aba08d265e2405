"""The project's declared lower bounds, and an environment that has them, cheaply.

``python scripts/lower_bounds.py pins``: each runtime dependency of ``pyproject.toml`` with a
``>=`` bound, except those pinned by ``constraints.txt`` (the torch/torchvision pair), as
``name==minimum``, one per line.

``python scripts/lower_bounds.py link REPORT SITE`` (run by the base venv's python): given pip's
``--report`` of a resolution with those pins, link into ``SITE`` (the site-packages of a new,
empty venv) every package the resolution shares with this environment, file tree by file
tree, and print ``name==version`` of the others, to be installed there. The new venv then holds
exactly the resolution (no package of the base that the resolution lacks: transformers 5.0
breaks on the ``kernels`` package that 5.25 brings) at the cost of the few packages that differ.
``python scripts/lower_bounds.py scripts`` (run by the new venv's python, once it holds the
packages): its console scripts (``dj-process``, ...), which the tests run.
``scripts/check_lower_bounds.sh`` does all three.
"""

from __future__ import annotations

import json
import os
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: Data-Juicer brings tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def constrained(path: Path) -> set[str]:
    """The names ``constraints.txt`` pins."""
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {canonicalize_name(Requirement(line).name) for line in lines if line}


def lower_bound_pins(pyproject: Path, skip: set[str]) -> list[str]:
    """``name==minimum`` for every dependency with a ``>=`` bound not in ``skip``."""
    project = tomllib.loads(pyproject.read_text())["project"]
    pins = []
    for line in project["dependencies"]:
        requirement = Requirement(line)
        if canonicalize_name(requirement.name) in skip:
            continue
        lows = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        if lows:
            pins.append(f"{requirement.name}=={lows[0]}")
    return pins


def top_level_entries(name: str) -> set[str]:
    """The first path parts of an installed distribution's files (its packages, modules,
    ``.dist-info``), those inside site-packages."""
    files = distribution(name).files or []
    return {Path(f).parts[0] for f in files if not str(f).startswith("..")}


def link_shared(report: dict, site: Path) -> list[str]:
    """Link the packages of ``report`` installed here at the same version into ``site``;
    return the others as ``name==version``."""
    base = Path(distribution("pip").locate_file(""))  # this environment's site-packages
    missing = []
    for item in report["install"]:
        meta = item["metadata"]
        if item.get("is_direct") and item["download_info"].get("dir_info") is not None:
            continue  # the project itself: the tests import it from the checkout
        try:
            same = distribution(meta["name"]).version == meta["version"]
        except PackageNotFoundError:
            same = False
        if not same:
            missing.append(f"{meta['name']}=={meta['version']}")
            continue
        for entry in top_level_entries(meta["name"]) - {"__pycache__"}:
            target = site / entry
            if (base / entry).exists() and not target.exists():
                os.symlink(base / entry, target)
    return missing


def write_console_scripts(bin_dir: Path, pyproject: Path) -> list[str]:
    """Console scripts in ``bin_dir`` for this interpreter: every ``console_scripts`` entry
    point it sees, and the project's own (``[project.scripts]``; the project is not installed
    there, the tests import it from the checkout)."""
    from importlib.metadata import entry_points

    targets = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    targets.update(tomllib.loads(pyproject.read_text())["project"].get("scripts", {}))
    for name, target in targets.items():
        module, _, attributes = target.partition(":")
        script = bin_dir / name
        script.write_text(
            f"#!{sys.executable}\nimport sys\nfrom importlib import import_module\n"
            f"target = import_module({module.strip()!r})\n"
            f"for name in {attributes.split('[')[0].strip()!r}.split('.'):\n"
            "    target = getattr(target, name)\nsys.exit(target())\n")
        script.chmod(0o755)
    return sorted(targets)


if __name__ == "__main__":
    if sys.argv[1:2] == ["scripts"]:
        write_console_scripts(Path(sys.executable).parent, ROOT / "pyproject.toml")
    elif sys.argv[1:2] == ["link"]:
        report_path, site_path = sys.argv[2:4]
        for line in link_shared(json.loads(Path(report_path).read_text()), Path(site_path)):
            print(line)
    else:
        skip = constrained(ROOT / "constraints.txt")
        for pin in lower_bound_pins(ROOT / "pyproject.toml", skip):
            print(pin)
