"""The op's features used together: structured captions with the quality gate's retries, and
long videos in windows with structured captions (each window's and the merged document under
the schema)."""

from __future__ import annotations

import pytest
from data_juicer.utils.constant import Fields
from data_juicer.utils.mm_utils import SpecialTokens

from dj_ops.captioning.records import META_KEY
from dj_ops.captioning.structured import validation_error
from dj_ops.ops.structured_config import ERROR_INVALID_JSON
from dj_ops.testing.clips import make_clip
from tests.conftest import make_op, run_op
from tests.test_long_videos import SPANS, WINDOWS
from tests.test_structured_op import USER_SCHEMA, USER_SCHEMA_TOKENS

pytest.importorskip("llguidance", reason="constrained decoding needs the structured extra")

V = SpecialTokens.video


@pytest.mark.composes("transformers", "json", "gate")
def test_json_documents_cut_by_the_token_limit_are_retried_then_recorded(qwen3, videos):
    # 12 tokens never hold a whole document: every attempt is flagged, then the video gets the
    # invalid_json error record with its attempts; no row is lost.
    op = make_op(qwen3, caption_format="json", json_schema=USER_SCHEMA, max_retries=1,
                 sampling_params={"max_new_tokens": 12}, keep_original_sample=False)
    samples = [{"text": f"{V} clip {i}", "videos": [v]} for i, v in enumerate(videos[:2])]
    rows = run_op(op, samples)
    assert len(rows) == 2
    for row in rows:
        record = row[Fields.meta][META_KEY]
        (video,) = record["videos"]
        assert record["status"] == "error" and video["error_kind"] == ERROR_INVALID_JSON
        assert video["attempts"] == 2
        assert all("truncated" in flags or "invalid_json" in flags
                   for flags in video["attempt_flags"])


@pytest.mark.composes("transformers", "json", "windows")
def test_windows_and_their_merge_follow_the_schema(qwen3, tmp_path):
    clip = str(make_clip(tmp_path / "long.mp4", seconds=40, fps=2))
    op = make_op(qwen3, caption_format="json", json_schema=USER_SCHEMA,
                 sampling_params={"max_new_tokens": USER_SCHEMA_TOKENS},
                 keep_original_sample=False, **WINDOWS)
    (row,) = run_op(op, [{"text": f"{V}", "videos": [clip]}])
    record = row[Fields.meta][META_KEY]
    (video,) = record["videos"]
    assert record["status"] == "captioned", record
    assert [(w["start"], w["end"]) for w in video["windows"]] == SPANS
    for window in video["windows"]:  # every window's caption is a document under the schema
        assert validation_error(window["caption"], USER_SCHEMA) is None
    assert validation_error(video["caption_json"], USER_SCHEMA) is None  # and the merged one
