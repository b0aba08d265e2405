"""The generated fault corpus through the op and through ``dj-process``: every input row is
accounted for, captioned or recorded with the expected error kind, and nothing is lost."""

from __future__ import annotations

import gzip
from collections import Counter

import pytest

from dj_ops.captioning.summary import record_of, summarize, summarize_records
from dj_ops.ops.sample_builder import CaptioningError
from dj_ops.testing.faults import CAPTIONED, PROMPT_FIELD, UNTOUCHED, build_fault_corpus
from dj_ops.video import FrameSettings, VideoError, decode_video
from tests.conftest import FAST_FRAMES, make_op, run_op
from tests.test_dj_process import run_recipe


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_fault_corpus(tmp_path_factory.mktemp("fault corpus ü"))


def by_name(rows):
    return {row["name"]: row for row in rows}


def assert_accounted_for(case, row):
    """``row`` is ``case``'s sample, captioned or carrying the expected error record."""
    assert row["videos"] == list(case.videos)
    record = record_of(row)
    if case.expected_kind is UNTOUCHED:
        assert record is None and row["text"] == case.sample()["text"]
    elif case.expected_kind == CAPTIONED:
        assert record["status"] == "captioned", (case.name, record)
        assert [v["path"] for v in record["videos"]] == list(case.videos)
        assert all(v["timestamps"] and v["generated_tokens"] > 0 for v in record["videos"])
    else:
        assert record["status"] == "error", (case.name, record)
        kinds = [v["error_kind"] for v in record["videos"]]
        assert case.expected_kind in kinds, (case.name, kinds)
        assert all(v["error_message"] for v in record["videos"])
        assert row["text"] == case.sample()["text"]  # the original, untouched


def expected_summary(cases, rows_per_case=1):
    statuses = Counter(
        "no_record" if c.expected_kind is UNTOUCHED else
        "captioned" if c.expected_kind == CAPTIONED else "error"
        for c in cases
    )
    kinds = Counter(c.expected_kind for c in cases if c.expected_kind)
    return {k: v * rows_per_case for k, v in statuses.items()}, dict(sorted(kinds.items()))


def check_output(cases, rows):
    """One output row per case, in order, each accounted for; the counts agree."""
    assert [r["name"] for r in rows] == [c.name for c in cases]
    for case, row in zip(cases, rows):
        assert_accounted_for(case, row)
    summary = summarize_records(rows)
    statuses, kinds = expected_summary(cases)
    assert summary["by_status"] == dict(sorted(statuses.items()))
    assert summary["error_kinds"] == kinds


def corpus_op(model, **params):
    return make_op(model, prompt_key=PROMPT_FIELD, keep_original_sample=False, **params)


def test_every_fault_is_captioned_or_recorded_with_its_kind(qwen3, corpus):
    op = corpus_op(qwen3)
    rows = run_op(op, [c.sample() for c in corpus], batch_size=10)
    check_output(corpus, rows)
    named = by_name(rows)
    # duplicates are captioned alike (greedy), within a sample and across samples
    first, second = named["duplicate_across_samples_1"], named["duplicate_across_samples_2"]
    assert first["text"].split("<")[1] == second["text"].split("<")[1]
    # the long clip is sampled over its whole length, the VFR clip at its real times
    long_times = record_of(named["long_video"])["videos"][0]["timestamps"]
    assert long_times[0] == 0.0 and long_times[-1] > 240
    vfr = decode_video(named["variable_frame_rate"]["videos"][0],
                       FrameSettings(**FAST_FRAMES, size_factor=32))
    vfr_times = record_of(named["variable_frame_rate"])["videos"][0]["timestamps"]
    assert vfr_times == [round(t, 3) for t in vfr.timestamps]
    # the process's own tally saw the same
    assert op.outcome_log.total.error_kinds == expected_summary(corpus)[1]


def test_huge_frames_are_capped_by_smart_resize(corpus):
    huge = next(c for c in corpus if c.name == "huge_resolution").videos[0]
    video = decode_video(huge, FrameSettings(**FAST_FRAMES, size_factor=32))
    assert (video.width, video.height) == (4000, 3000)
    assert video.frames.shape[1:3] == (96, 128)  # 4:3 kept, within max_pixels 112*112
    assert video.frames.shape[1] * video.frames.shape[2] <= FAST_FRAMES["max_pixels"]


def test_drop_leaves_failed_rows_out_but_counts_them(qwen3, corpus):
    op = corpus_op(qwen3, on_error="drop")
    rows = run_op(op, [c.sample() for c in corpus], batch_size=10)
    kept = [c for c in corpus if not c.expected_kind]
    assert [r["name"] for r in rows] == [c.name for c in kept]
    total = op.outcome_log.total
    assert total.rows == len(corpus)
    assert dict(total.error_kinds) == expected_summary(corpus)[1]


def test_raise_stops_with_the_error_kind(qwen3, corpus):
    cases = [c for c in corpus if c.name in ("one_frame", "zero_bytes")]
    with pytest.raises(CaptioningError, match="empty_file: the file is empty"):
        run_op(corpus_op(qwen3, on_error="raise"), [c.sample() for c in cases])


def dj_logs(work_dir) -> str:
    """Everything Data-Juicer logged into its work folder (gzipped files)."""
    return "".join(gzip.open(p, "rt").read() for p in sorted(work_dir.glob("**/logs/**/*.gz")))


def test_the_corpus_through_dj_process(tmp_path, qwen3, corpus):
    params = {"hf_model": qwen3, "prompt_key": PROMPT_FIELD, "keep_original_sample": False,
              "seed": 0, **FAST_FRAMES, "sampling_params": {"max_new_tokens": 8}}
    rows = run_recipe(tmp_path, [c.sample() for c in corpus], params, np=2)
    check_output(corpus, rows)
    # the driver logs the counts over the output of both workers; each worker its batches
    logs = dj_logs(tmp_path / "work")
    assert f"vlm_video_captioning_mapper output: {summarize(rows).format()}" in logs
    assert "vlm_video_captioning_mapper batch 1: " in logs


def test_a_first_batch_of_failures_does_not_fix_a_wrong_schema(qwen3, corpus, videos):
    # A batch of failures only used to type timestamps as a list of nulls, and the next
    # batch, with real timestamps, failed to be written: the whole job was lost.
    missing = next(c for c in corpus if c.name == "missing_file").sample()
    samples = [missing, missing, {"text": "", "videos": videos[:1], PROMPT_FIELD: "Go."}]
    rows = run_op(corpus_op(qwen3), samples, batch_size=2)
    assert [record_of(r)["status"] for r in rows] == ["error", "error", "captioned"]
    assert record_of(rows[0])["videos"][0]["timestamps"] == []
    assert len(record_of(rows[2])["videos"][0]["timestamps"]) >= 2


@pytest.mark.parametrize("method", ["sequential", "seek"])
def test_a_truncated_file_is_an_error_even_when_only_its_last_frame_is_wanted(corpus, method):
    # Frames the container counts but never delivers at the very end are excused; a stream
    # that stops halfway is not, even when the one missing wanted frame is the last.
    truncated = next(c for c in corpus if c.name == "truncated_faststart").videos[0]
    with pytest.raises(VideoError, match=r"first missing: 49 of 50, stream ended after frame"):
        decode_video(truncated, FrameSettings(strategy="uniform", num_frames=2), method=method)
