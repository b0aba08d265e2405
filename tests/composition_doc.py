"""The composition matrix, read from the tests themselves: ``python -m tests.composition_doc``
writes ``docs/composition.md`` (``--check``: exit 1 when it is stale).

Each test marked ``@pytest.mark.composes(feature, ...)`` shows every pair among the features it
names working (a test may carry several such marks: one per set of features it combines, e.g.
one per op of a recipe); its tier (default, ``slow``, ``ray``, ``vllm``) comes from its own
markers or its module's ``pytestmark``. Refused pairs come from
:data:`dj_ops.ops.composition.REFUSED`. The markers are read with ``ast`` (no test module is
imported).
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path

from dj_ops.ops.composition import FEATURES, REFUSED, alternatives, covered_pairs, pairs

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
PAGE = ROOT / "docs" / "composition.md"
TIERS = ("slow", "ray", "vllm", "cogvlm2_env")  # markers that take a test out of the default run
# how the tiers run (the README's test command runs the default tier)
TIER_COMMANDS = {
    "default": "`python -m pytest`",
    "slow": "`python -m pytest -m slow`",
    "ray": "`python -m pytest -m ray`",
    "vllm": "`.venv-vllm/bin/python -m pytest -m vllm`",
}


@dataclass(frozen=True)
class CompositionTest:
    """One test marked ``composes``: where it is, its tier, the features it combines."""

    path: str
    name: str
    tier: str
    features: tuple[str, ...]

    @property
    def node(self) -> str:
        return f"{self.path}::{self.name}"


def _constants(tree: ast.Module) -> dict[str, tuple[str, ...]]:
    """Module-level names bound to a tuple or list of strings (``MODES = ("all", ...)``)."""
    found = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and isinstance(node.value, (ast.Tuple, ast.List))
                and all(isinstance(e, ast.Constant) and isinstance(e.value, str)
                        for e in node.value.elts)):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = tuple(e.value for e in node.value.elts)
    return found


def _strings(args: list[ast.expr], names: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    """The string arguments, ``*NAME`` of a module-level tuple of strings expanded."""
    out: list[str] = []
    for arg in args:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            out.append(arg.value)
        elif isinstance(arg, ast.Starred) and isinstance(arg.value, ast.Name):
            out.extend(names.get(arg.value.id, ()))
    return tuple(out)


def _mark(node: ast.expr, names: dict) -> tuple[str, tuple[str, ...]] | None:
    """``(name, string args)`` of a ``pytest.mark.NAME(...)`` or ``pytest.mark.NAME``."""
    call = node if isinstance(node, ast.Call) else None
    target = call.func if call else node
    if (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Attribute)
            and target.value.attr == "mark"):
        return target.attr, _strings(call.args if call else [], names)
    return None


def _marks(nodes: list[ast.expr], names: dict) -> list[tuple[str, tuple[str, ...]]]:
    return [mark for node in nodes if (mark := _mark(node, names)) is not None]


def _module_marks(tree: ast.Module, names: dict) -> list[tuple[str, tuple[str, ...]]]:
    """The marks of ``pytestmark = ...`` (one mark or a list of them)."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
            value = node.value
            return _marks(value.elts if isinstance(value, (ast.List, ast.Tuple)) else [value],
                          names)
    return []


def _tests(tree: ast.Module):
    """The test functions of a module, methods of test classes included."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
            yield node.name, node
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name.startswith("test"):
                    yield f"{node.name}::{item.name}", item


def composition_tests(folder: Path = TESTS) -> list[CompositionTest]:
    """Every test marked ``composes`` under ``folder``, in file and line order."""
    found = []
    for path in sorted(folder.glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = _constants(tree)
        module = _module_marks(tree, names)
        for name, function in _tests(tree):
            marks = module + _marks(function.decorator_list, names)
            tier = next((mark for mark, _ in marks if mark in TIERS), "default")
            # one entry per marker: a test may combine several sets (one per op of a recipe)
            found.extend(CompositionTest(f"tests/{path.name}", name, tier, features)
                         for mark, features in reversed(marks) if mark == "composes")
    return found


def cells(tests: list[CompositionTest]) -> dict[frozenset[str], list[CompositionTest]]:
    """Per pair, the tests that show it."""
    shown: dict[frozenset[str], list[CompositionTest]] = {frozenset(p): [] for p in pairs()}
    for test in tests:
        for pair in covered_pairs(test.features):
            shown.setdefault(pair, []).append(test)
    return shown


def _cell(first: str, second: str, shown: dict) -> str:
    if first == second:
        return ""
    if alternatives(first, second):
        return "·"
    pair = frozenset({first, second})
    if pair in REFUSED:
        return "✗"
    tiers = {t.tier for t in shown.get(pair, [])}
    return "✓" if "default" in tiers else ("✓ˢ" if tiers else "**?**")


def page(tests: list[CompositionTest]) -> str:
    """``docs/composition.md``."""
    shown = cells(tests)
    names = list(FEATURES)
    codes = {name: f"F{i + 1}" for i, name in enumerate(names)}
    lines = [
        "# Which features compose",
        "",
        "Generated by `python -m tests.composition_doc` from the tests' `composes` markers and "
        "the refusals in `dj_ops/ops/composition.py`; `tests/test_composition_matrix.py` fails "
        "when a pair is undecided or this page is stale. Do not edit by hand.",
        "",
        "Every pair of features is either shown working by a test (✓: in the default test run; "
        "✓ˢ: only in a separate tier, `slow`, `ray` or `vllm`) or refused when the op is built "
        "(✗, with the error message below). `·`: two values of one parameter, not a pair.",
        "",
        "| | feature | turned on by |",
        "|---|---|---|",
        *[f"| {codes[n]} | `{n}` | {FEATURES[n]} |" for n in names],
        "",
        "| | " + " | ".join(codes[n] for n in names) + " |",
        "|---" * (len(names) + 1) + "|",
        *[f"| **{codes[a]}** | " + " | ".join(_cell(a, b, shown) for b in names) + " |"
          for a in names],
        "",
        "## Refused when the op is built",
        "",
        *[f"- `{a}` × `{b}`: {reason}" for pair, reason in REFUSED.items()
          for a, b in [sorted(pair, key=names.index)]],
        "",
        "## The tests of each pair",
        "",
        "Tiers: " + "; ".join(f"{tier}: {command}" for tier, command in TIER_COMMANDS.items())
        + ".",
        "",
    ]
    for a, b in pairs():
        pair = frozenset({a, b})
        if pair in REFUSED:
            lines.append(f"- `{a}` × `{b}`: refused")
            continue
        found = shown.get(pair, [])
        nodes = dict.fromkeys(f"`{t.node}`" + ("" if t.tier == "default" else f" ({t.tier})")
                              for t in found)
        listed = ", ".join(nodes) or "**no test**"
        lines.append(f"- `{a}` × `{b}`: {listed}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale")
    args = parser.parse_args(argv)
    fresh = page(composition_tests())
    if args.check:
        if not PAGE.exists() or PAGE.read_text(encoding="utf-8") != fresh:
            print(f"{PAGE} is stale: run python -m tests.composition_doc", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
