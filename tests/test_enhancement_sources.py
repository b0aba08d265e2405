"""Where the captions are in the captioning op's output, for every output mode, and the shape of
the fields the rewrites go into (pure, on rows the real captioning op wrote)."""

from __future__ import annotations

import pytest
from data_juicer.utils.constant import Fields
from data_juicer.utils.mm_utils import get_special_tokens

from dj_ops.captioning.records import META_KEY
from dj_ops.captioning.text import captions_after_video_tokens
from dj_ops.enhancement.sources import (
    FAIL,
    NO_CAPTION,
    PASS,
    REWRITE,
    SourceLayout,
    never_captioned,
    plan_row,
    shaped,
)
from tests.enhancement_support import WINDOWS, V, captioned, video_rows

pytest_plugins = ("tests.enhancement_fixtures",)  # its fixtures

SPECIAL = list(get_special_tokens().values())


@pytest.fixture(scope="module")
def text_rows(qwen3, videos):
    return captioned(qwen3, video_rows(videos[:2]) + [{"text": f"{V}", "videos": ["/no/such"]}])


def test_generated_samples_are_read_after_their_video_tokens(text_rows):
    plans = [plan_row(row, SourceLayout()) for row in text_rows]
    kinds = [p.kind for p in plans]
    # original, generated, original, generated, two-video original, generated, no video,
    # the failed row (kept with its error record): only generated samples are rewritten
    assert kinds == [PASS, REWRITE, PASS, REWRITE, PASS, REWRITE, PASS, PASS]
    assert all(p.suspect_fields == () for p in plans)
    assert not any(never_captioned(row, SourceLayout()) for row in text_rows)  # originals too
    assert never_captioned({"text": "", "videos": ["a.mp4"], Fields.meta: {}}, SourceLayout())
    for row, plan in zip(text_rows, plans):
        if plan.kind != REWRITE:
            continue
        found = captions_after_video_tokens(row["text"], V, SPECIAL)
        assert [s.text for s in plan.slots] == found
        assert [s.place for s in plan.slots] == [(v, 0, -1) for v in range(len(found))]
        assert plan.candidates == [None] * len(found) and plan.windows == [0] * len(found)


def test_a_caption_field_and_mode_all_keep_their_shape(qwen3, videos):
    rows = captioned(qwen3, video_rows(videos[:2]), caption_key="caption", caption_num=2,
                     keep_candidate_mode="all")
    layout = SourceLayout(caption_key="caption")
    assert layout.output_key == "caption_enhanced"
    two = next(r for r in rows if len(r["videos"]) == 2)
    plan = plan_row(two, layout)
    assert plan.kind == REWRITE and plan.candidates == [2, 2]
    assert [(s.place, s.text) for s in plan.slots] == [
        ((v, i, -1), two["caption"][v][i]) for v in range(2) for i in range(2)]
    captions, windows = shaped(plan, lambda place: "-".join(map(str, place)), "")
    assert captions == [["0-0--1", "0-1--1"], ["1-0--1", "1-1--1"]] and windows == [[], []]


def test_captions_not_where_configured_fail_the_row_naming_the_fix(qwen3, videos):
    field_rows = captioned(qwen3, video_rows(videos[:1]), caption_key="caption")
    plan = plan_row(field_rows[0], SourceLayout())  # captions in a field, read from the text
    assert plan.kind == FAIL and plan.error[0] == NO_CAPTION
    assert "set caption_key" in plan.error[1]
    plan = plan_row(field_rows[0], SourceLayout(caption_key="other"))
    assert plan.kind == FAIL and "'other'" in plan.error[1]
    # the original text holds words after its tokens: read as captions, with the field flagged
    two = captioned(qwen3, video_rows(videos[:2])[2:3], caption_key="caption")[0]
    plan = plan_row(two, SourceLayout())
    assert [s.text for s in plan.slots] == ["first", "second"]
    assert plan.suspect_fields == ("caption",)
    assert plan_row(two, SourceLayout(caption_key="caption")).suspect_fields == ()


def test_window_captions_come_from_the_captioning_record(qwen3, long_clip):
    rows = captioned(qwen3, [{"text": f"{V}", "videos": [long_clip]}], caption_key="caption",
                     **WINDOWS)
    (row,) = rows
    windows = row[Fields.meta][META_KEY]["videos"][0]["windows"]
    plan = plan_row(row, SourceLayout(caption_key="caption", windows=True))
    assert plan.windows == [len(windows)] == [4]
    assert [s.text for s in plan.slots] == row["caption"] + [w["caption"] for w in windows]
    assert [s.place for s in plan.slots][1:] == [(0, 0, w) for w in range(4)]
    without = plan_row(row, SourceLayout(caption_key="caption"))
    assert [s.text for s in without.slots] == row["caption"] and without.windows == [0]
