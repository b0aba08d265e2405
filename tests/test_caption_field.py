"""Caption-field output (``caption_key``): captions written into a field, one row per sample."""

from __future__ import annotations

import pytest
from data_juicer.utils.constant import Fields
from data_juicer.utils.mm_utils import SpecialTokens, get_special_tokens

import dj_ops.ops.config as op_module  # where the op reads its Data-Juicer resources
from dj_ops.captioning.records import META_KEY
from dj_ops.captioning.text import captions_after_video_tokens
from dj_ops.testing.clips import write_bytes
from tests.conftest import make_op, run_op

V, E = SpecialTokens.video, SpecialTokens.eoc
SPECIAL = list(get_special_tokens().values())


def mixed_samples(videos: list[str]) -> list[dict]:
    return [
        {"text": f"{V} one {E}", "videos": videos[:1]},
        {"text": f"{V}{V} two {E}", "videos": videos[1:3]},
        {"text": "no video here", "videos": []},
        {"text": f"{V} first {E} text {E}{V} last", "videos": videos[3:5]},
    ]


def read_back(row: dict) -> list[str]:
    return captions_after_video_tokens(row["text"], V, SPECIAL)


@pytest.mark.parametrize("mode", ["random_any", "similar_one_simhash"])
def test_field_holds_the_captions_text_mode_would_write(qwen3, videos, mode):
    samples = mixed_samples(videos)
    params = {"caption_num": 2, "keep_candidate_mode": mode, "keep_original_sample": False}
    as_text = run_op(make_op(qwen3, **params), samples)
    as_field = run_op(make_op(qwen3, caption_key="caption", **params), samples)
    assert len(as_field) == len(samples)
    for original, text_row, field_row in zip(samples, as_text, as_field):
        assert field_row["text"] == original["text"]  # text untouched
        assert field_row["videos"] == original["videos"]
        if not original["videos"]:
            assert field_row["caption"] == []
            assert not (field_row[Fields.meta] or {}).get(META_KEY)
            continue
        assert field_row["caption"] == read_back(text_row)
        assert all(field_row["caption"])
        record = field_row[Fields.meta][META_KEY]
        assert record == text_row[Fields.meta][META_KEY]  # same provenance as text mode


def test_mode_all_keeps_every_candidate_per_video(qwen3, videos):
    samples = mixed_samples(videos)
    params = {"caption_num": 3, "keep_candidate_mode": "all", "keep_original_sample": False}
    as_text = run_op(make_op(qwen3, **params), samples)
    as_field = run_op(make_op(qwen3, caption_key="caption", **params), samples)
    assert len(as_field) == len(samples)
    text_groups = iter(as_text)
    for original, field_row in zip(samples, as_field):
        if not original["videos"]:
            assert next(text_groups) == {**original, Fields.meta: {META_KEY: None}}
            assert field_row["caption"] == []
            continue
        candidates = [read_back(next(text_groups)) for _ in range(3)]  # rows of candidate 0..2
        expected = [[candidates[i][v] for i in range(3)] for v in range(len(original["videos"]))]
        assert field_row["caption"] == expected
        record = field_row[Fields.meta][META_KEY]
        assert record["candidate_index"] == -1
        # candidate i of video v at v * 3 + i
        assert [v["path"] for v in record["videos"]] == [p for p in original["videos"]
                                                         for _ in range(3)]


def test_failed_sample_keeps_its_row_with_empty_captions(qwen3, videos, tmp_path):
    broken = str(write_bytes(tmp_path / "broken.mp4", b"not a video"))
    samples = [{"text": f"{V} {E}", "videos": [broken]}, {"text": f"{V} {E}", "videos": videos[:1]}]
    rows = run_op(make_op(qwen3, caption_key="caption"), samples)
    assert [r["caption"] for r in rows][0] == [""]
    assert rows[0][Fields.meta][META_KEY]["status"] == "error"
    assert rows[0][Fields.meta][META_KEY]["videos"][0]["error_kind"]
    assert rows[1][Fields.meta][META_KEY]["status"] == "captioned" and rows[1]["caption"][0]
    all_mode = run_op(make_op(qwen3, caption_key="caption", caption_num=2,
                              keep_candidate_mode="all"), samples)
    assert all_mode[0]["caption"] == [[]] and len(all_mode[1]["caption"][0]) == 2
    dropped = run_op(make_op(qwen3, caption_key="caption", on_error="drop"), samples)
    assert [r["videos"] for r in dropped] == [videos[:1]]


@pytest.mark.parametrize("key", ["", "text", "videos", Fields.meta])
def test_caption_key_must_name_a_new_field(qwen3, key):
    with pytest.raises(ValueError, match="caption_key"):
        make_op(qwen3, caption_key=key)


def test_one_model_replica_per_gpu_when_cuda_exists(qwen3, monkeypatch):
    # No GPU here: this checks the declaration Data-Juicer reads (Ray actors, worker count).
    monkeypatch.setattr(op_module, "is_cuda_available", lambda: True)
    assert make_op(qwen3).num_gpus == 1
    assert make_op(qwen3, num_gpus=0.5).num_gpus == 0.5
    monkeypatch.setattr(op_module, "is_cuda_available", lambda: False)
    assert make_op(qwen3).num_gpus is None
