"""``bench/enhancement_cost.py``: its block of docs/performance.md is written from its results,
replaced in place and never duplicated, and the page holds the saved results' figures."""

from __future__ import annotations

from pathlib import Path

from bench.enhancement_cost import BEGIN, END, section, write_section
from bench.measure import load

ROOT = Path(__file__).resolve().parents[1]


def test_the_block_is_replaced_in_place(tmp_path):
    result = load("enhancement_cost")
    doc = tmp_path / "performance.md"
    doc.write_text("# Performance\n\nkept above\n")
    write_section(result, doc)
    write_section({**result, "rewrite_over_caption_wall": 0.1234}, doc)
    text = doc.read_text()
    assert text.startswith("# Performance\n\nkept above\n")
    assert text.count(BEGIN) == text.count(END) == 1 and "**0.1234**" in text


def test_the_page_shows_the_saved_results():
    result = load("enhancement_cost")
    page = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    assert section(result) in page, "run python -m bench.enhancement_cost --doc-only"
    assert str(result["load_avg_1m_during"]) in section(result)
