"""The README's parameter reference, generated from the op's parameter table.

``python -m dj_ops.captioning.parameter_docs`` rewrites the block between the README's
``<!-- parameters:begin -->`` and ``<!-- parameters:end -->`` markers; ``--check`` exits 1 when
the README differs from the table (``tests/test_parameters.py`` runs the same comparison).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dj_ops.captioning.parameters import DATA_JUICER_PARAMETERS, PARAMETERS, Parameter

BEGIN, END = "<!-- parameters:begin -->", "<!-- parameters:end -->"
README = Path(__file__).resolve().parents[2] / "README.md"


def shown_default(parameter: Parameter) -> str:
    """The default column: the table's words, else the value as YAML writes it."""
    if parameter.shown:
        return parameter.shown
    value = parameter.default
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def row(parameter: Parameter) -> str:
    flag = f"`{parameter.flag}`" if parameter.flag else "–"
    return (f"| `{parameter.name}` | {shown_default(parameter)} | {flag} | "
            f"{parameter.meaning} |")


def parameter_table() -> str:
    """The reference as markdown: the op's parameters in signature order, then Data-Juicer's
    that the op sets defaults for."""
    lines = ["| parameter | default | `dj-ops-caption` | meaning |", "|---|---|---|---|"]
    lines += [row(p) for p in (*PARAMETERS, *DATA_JUICER_PARAMETERS)]
    return "\n".join(lines)


def with_table(readme: str) -> str:
    """``readme`` with its parameter block replaced by the generated table."""
    head, sep, rest = readme.partition(BEGIN)
    _, sep_end, tail = rest.partition(END)
    if not sep or not sep_end:
        raise ValueError(f"the README has no {BEGIN} ... {END} block")
    return f"{head}{BEGIN}\n{parameter_table()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the README is stale")
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    fresh = with_table(text)
    if args.check:
        if fresh != text:
            print(f"{args.readme}: the parameter reference is stale; run python -m "
                  "dj_ops.captioning.parameter_docs", file=sys.stderr)
            return 1
        return 0
    args.readme.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
