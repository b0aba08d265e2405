"""Counting outcomes from records and output rows, and the op's per-process log lines."""

import os

import pytest
from loguru import logger

from dj_ops.captioning.records import META_KEY
from dj_ops.captioning.summary import OutcomeSummary, summarize_records
from dj_ops.ops import outcome_log
from dj_ops.ops.outcome_log import OutcomeLog

META = "__dj__meta__"


def captioned(*flags):
    """A captioned record with one video per (hit_token_limit, repetition_trimmed) pair."""
    videos = [{"error_kind": "", "hit_token_limit": h, "repetition_trimmed": r} for h, r in flags]
    return {"status": "captioned", "videos": videos}


def failed(*kinds):
    return {"status": "error", "videos": [{"error_kind": k} for k in kinds]}


def row(record):
    return {"text": "t", META: {"other_op": 1, **({META_KEY: record} if record else {})}}


ROWS = [
    row(captioned((True, False), (False, True))),
    row(captioned((True, True))),
    row(failed("missing_file", "decode_error")),
    row(failed("missing_file")),
    row(None),
    {"text": "no meta at all"},
]


def test_summarize_records_counts_by_status_and_kind():
    assert summarize_records(ROWS) == {
        "rows": 6,
        "by_status": {"captioned": 2, "error": 2, "no_record": 2},
        "error_kinds": {"decode_error": 1, "missing_file": 2},
        "videos_captioned": 3,
        "hit_token_limit": 2,
        "repetition_trimmed": 2,
        "videos_from_store": 0,
    }


def test_summary_merge_and_format():
    first, second = OutcomeSummary(), OutcomeSummary()
    first.add(captioned((True, False)))
    second.add(failed("timeout"))
    second.add(None)
    first.merge(second)
    assert first.format() == (
        "3 rows: captioned 1, error 1, no_record 1; errors: timeout 1; "
        "1 videos captioned (0 reused from the result store, 1 generated), 1 at the token "
        "limit, 0 repetition loops trimmed"
    )
    assert OutcomeSummary().format() == (
        "0 rows: none; errors: none; 0 videos captioned (0 reused from the result store, "
        "0 generated), 0 at the token limit, 0 repetition loops trimmed"
    )


ONE_GENERATED = "(0 reused from the result store, 1 generated)"
NONE_GENERATED = "(0 reused from the result store, 0 generated)"


@pytest.fixture
def log_lines():
    lines = []
    sink = logger.add(lambda m: lines.append((m.record["level"].name, m.record["message"])),
                      level="DEBUG")
    yield lines
    logger.remove(sink)


def test_outcome_log_logs_each_batch_and_totals_every_n(log_lines):
    tally = OutcomeLog("op", every=2)
    tally.add_batch([captioned((False, False)), None])
    tally.add_batch([failed("not_a_video")])
    tally.add_batch([failed("not_a_video")])
    pid = os.getpid()
    assert log_lines == [
        ("DEBUG", "op batch 1: 2 rows: captioned 1, no_record 1; errors: none; 1 videos "
                  f"captioned {ONE_GENERATED}, 0 at the token limit, 0 repetition loops trimmed"),
        ("DEBUG", "op batch 2: 1 rows: error 1; errors: not_a_video 1; 0 videos captioned "
                  f"{NONE_GENERATED}, 0 at the token limit, 0 repetition loops trimmed"),
        ("INFO", f"op totals in process {pid} after 2 batches: 3 rows: captioned 1, error 1, "
                 f"no_record 1; errors: not_a_video 1; 1 videos captioned {ONE_GENERATED}, 0 at "
                 "the token limit, 0 repetition loops trimmed"),
        ("DEBUG", "op batch 3: 1 rows: error 1; errors: not_a_video 1; 0 videos captioned "
                  f"{NONE_GENERATED}, 0 at the token limit, 0 repetition loops trimmed"),
    ]
    assert tally.total.error_kinds == {"not_a_video": 2}


def test_totals_are_logged_once_something_was_counted(log_lines):
    tally = OutcomeLog("op")
    tally.log_total()
    assert log_lines == []  # nothing counted: no line
    tally.add_batch([failed("empty_file")])
    log_lines.clear()
    tally.log_total()
    assert log_lines == [("INFO", f"op totals in process {os.getpid()} after 1 batches: 1 rows: "
                                  f"error 1; errors: empty_file 1; 0 videos captioned "
                                  f"{NONE_GENERATED}, 0 at the token limit, 0 repetition loops "
                                  "trimmed")]


def test_dataset_outcomes_are_counted_over_the_whole_output(log_lines):
    from datasets import Dataset

    dataset = Dataset.from_list([row(captioned((True, False))), row(failed("timeout")),
                                 row(None)])
    summary = outcome_log.log_dataset_outcomes("op", dataset, META, " (note)")
    assert summary.as_dict()["by_status"] == {"captioned": 1, "error": 1, "no_record": 1}
    assert log_lines[-1] == ("INFO", f"op output: {summary.format()} (note)")
    without_meta = outcome_log.log_dataset_outcomes("op", Dataset.from_list([{"a": 1}]), META)
    assert without_meta.as_dict()["by_status"] == {"no_record": 1}
