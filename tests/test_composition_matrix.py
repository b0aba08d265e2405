"""Every pair of the op's features is decided: shown working by a test marked ``composes`` or
refused when the op is built (dj_ops/ops/composition.py); docs/composition.md, written from
those markers and that table, is current."""

from __future__ import annotations

from dj_ops.ops.composition import FEATURES, REFUSED, covered_pairs, pairs
from tests import composition_doc


def test_the_marker_reader_finds_marks_tiers_and_classes(tmp_path):
    (tmp_path / "test_x.py").write_text(
        "import pytest\n"
        "pytestmark = [pytest.mark.vllm]\n"
        "MODES = ('all', 'consensus')\n"
        "@pytest.mark.composes('vllm', 'json', *MODES)\n"
        "@pytest.mark.parametrize('x', [1])\n"
        "def test_a(x):\n    pass\n"
        "class TestB:\n"
        "    @pytest.mark.composes('vllm', 'windows')\n"
        "    def test_b(self):\n        pass\n"
        "def test_unmarked():\n    pass\n")
    found = composition_doc.composition_tests(tmp_path)
    assert [(t.name, t.tier, t.features) for t in found] == [
        ("test_a", "vllm", ("vllm", "json", "all", "consensus")),
        ("TestB::test_b", "vllm", ("vllm", "windows"))]


def test_every_pair_is_shown_working_or_refused():
    tests = composition_doc.composition_tests()
    for test in tests:
        unknown = set(test.features) - set(FEATURES)
        assert not unknown, f"{test.node} names unknown features {unknown}"
    shown = set().union(*(covered_pairs(t.features) for t in tests))
    undecided = [p for p in pairs() if frozenset(p) not in shown | set(REFUSED)]
    assert not undecided, f"pairs neither tested nor refused: {undecided}"
    assert not shown & set(REFUSED), "a refused pair is also shown working"


def test_the_page_is_current():
    fresh = composition_doc.page(composition_doc.composition_tests())
    assert composition_doc.PAGE.read_text(encoding="utf-8") == fresh, (
        "docs/composition.md is stale: python -m tests.composition_doc")
