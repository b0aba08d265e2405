"""The run report without a browser: rows to videos, the gallery's choice, the page's bounds,
and the command on the exports Data-Juicer writes (a jsonl, its _stats.jsonl, a shard folder)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dj_ops.captioning.records import (
    STATUS_CAPTIONED,
    STATUS_ERROR,
    RunInfo,
    VideoOutcome,
    WindowOutcome,
    build_record,
    with_record,
)
from dj_ops.report.build import ReportOptions, build_report, export_rows
from dj_ops.report.entries import TextLayout, iter_entries
from dj_ops.report.page import MAX_TEXT_CHARS
from dj_ops.report.runlog import find_work_dir, read_run_log, read_store
from dj_ops.report.sampling import GallerySample, kind_of
from dj_ops.store import SQLiteStore
from dj_ops.testing.report_rows import synthetic_rows

RUN = RunInfo("m", "transformers", {"max_new_tokens": 8}, "random_any")
ALL = RunInfo("m", "transformers", {"max_new_tokens": 8}, "all")
V, E = "<__dj__video>", "<|__dj__eoc|>"


def jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, default=jsonable) + "\n" for r in rows))
    return path


def row(text: str, record: dict, **extra) -> dict:
    return {"text": text, "videos": [v["path"] for v in record["videos"]],
            "__dj__meta__": with_record({}, record), **extra}


def captioned(path: str, run: RunInfo = RUN, index: int = -1, **fields) -> dict:
    return build_record(STATUS_CAPTIONED, run, "p", [VideoOutcome(path, **fields)], index)


def test_each_video_becomes_one_entry_with_its_caption_flags_and_error():
    two = build_record(STATUS_CAPTIONED, RUN, "p", [VideoOutcome("a.mp4"),
                       VideoOutcome("b.mp4", attempts=(("truncated",),))], -1)
    failed = build_record(STATUS_ERROR, RUN, "p", [VideoOutcome(
        "c.mp4", error_kind="decode_error", error_message="broken")], -1)
    rows = [{"text": "original, no record", "__dj__meta__": {}},
            row(f"{V} a dog {V} a cat {E}", two), row(f"{V} {E}", failed)]
    entries = list(iter_entries(rows))
    assert [(e.path, e.status, e.captions, e.flags) for e in entries] == [
        ("a.mp4", "captioned", ["a dog"], ()), ("b.mp4", "captioned", ["a cat"], ("truncated",)),
        ("c.mp4", "error", [], ())]
    assert (entries[2].error_kind, entries[2].error_message) == ("decode_error", "broken")
    assert [e.index for e in entries] == [0, 1, 2]


def test_all_mode_candidates_join_into_one_entry_per_video():
    rows = [row(f"{V} first {i} {E}", captioned("a.mp4", ALL, i)) for i in range(3)]
    rows += [row(f"{V} other {i} {E}", captioned("b.mp4", ALL, i)) for i in range(3)]
    rows += [row(f"{V} again {i} {E}", captioned("a.mp4", ALL, i)) for i in range(2)]
    entries = list(iter_entries(rows))
    assert [(e.index, e.path, e.captions) for e in entries] == [
        (0, "a.mp4", ["first 0", "first 1", "first 2"]),
        (1, "b.mp4", ["other 0", "other 1", "other 2"]),
        (2, "a.mp4", ["again 0", "again 1"])]


def test_caption_field_json_documents_and_windows_are_read():
    record = captioned("a.mp4", structured={"caption_json": '{"summary": "a dog"}',
                                            "captions_by_length": {"short": "a dog"}},
                       windows=(WindowOutcome(start=0.0, end=10.0, caption="w0"),))
    rows = [row(f"{V} {E}", record, caption=["merged"])]
    entry = next(iter_entries(rows, TextLayout(caption_key="caption")))
    assert entry.captions == ["merged"]
    assert json.loads(entry.caption_json) == {"summary": "a dog"}
    assert entry.windows[0]["caption"] == "w0"


def test_the_gallery_shows_failed_and_flagged_first_then_a_random_share():
    entries = list(iter_entries(synthetic_rows(3000, seed=1, failed=0.05, flagged=0.05)))
    kinds = Counter(kind_of(e) for e in entries)
    shown = GallerySample(limit=300, problem_limit=200, seed=3).offer_all(entries).result()
    assert shown.total == dict(kinds)
    assert shown.shown["failed"] + shown.shown["flagged"] == 200
    assert shown.shown["failed"] >= 100 and shown.shown["flagged"] >= 100
    assert shown.shown["other"] == 100 and len(shown.entries) == 300
    assert [e.index for e in shown.entries] == sorted(e.index for e in shown.entries)
    again = GallerySample(limit=300, problem_limit=200, seed=3).offer_all(entries).result()
    assert [e.index for e in again.entries] == [e.index for e in shown.entries]
    few = GallerySample(limit=50, problem_limit=40).offer_all(entries[:30]).result()
    assert len(few.entries) == 30  # everything, when there is less than the limit


def test_a_large_report_keeps_to_its_size_bound(tmp_path):
    """3,000 rows with noise strips (the largest JPEGs): the page keeps to the gallery's byte
    bound plus a fixed part, and says what it left out."""
    rows = json.loads(json.dumps(synthetic_rows(3_000), default=jsonable))
    options = ReportOptions(limit=400, problem_limit=200, max_bytes=2_000_000)
    report = build_report(rows, tmp_path / "r.html", source="synthetic", options=options)
    html = report.path.read_text()
    assert report.stats.videos == 3_000
    assert report.size < options.max_bytes + 300_000
    cards = html.count('<article class="card')
    assert 0 < cards < 400
    assert f"{400 - cards} more were chosen but left out" in html
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html


def test_captions_are_escaped_and_long_texts_cut(tmp_path):
    evil = "<script>alert(1)</script>" + "x" * (MAX_TEXT_CHARS + 100)
    rows = [row(f"{V} {evil} {E}", captioned("a.mp4"))]
    html = build_report(rows, tmp_path / "r.html", source="s").path.read_text()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    assert "x" * (MAX_TEXT_CHARS + 1) not in html


def test_charts_are_drawn_where_the_records_hold_their_numbers(tmp_path):
    rows = json.loads(json.dumps(synthetic_rows(200), default=jsonable))
    html = build_report(rows, tmp_path / "r.html", source="s").path.read_text()
    drawn = re.findall(r'data-chart="(\w+)">\s*<figcaption>[^<]*</figcaption>\s*<img', html)
    assert set(drawn) == {"throughput", "time_split", "failures", "flags", "caption_words",
                          "frames"}
    # no windows, no token budget in these records: said, not drawn
    assert "window_seconds unset" in html and "no frame budget was set" in html


def test_the_command_reads_a_jsonl_with_its_stats_file_and_a_shard_folder(tmp_path):
    rows = json.loads(json.dumps(synthetic_rows(60, seed=2), default=jsonable))
    # keep_stats_in_res_ds false: the export has no meta, the _stats.jsonl beside it has
    export = write_jsonl(tmp_path / "plain" / "out.jsonl",
                         [{k: v for k, v in r.items() if k != "__dj__meta__"} for r in rows])
    write_jsonl(tmp_path / "plain" / "out_stats.jsonl",
                [{"__dj__meta__": r["__dj__meta__"]} for r in rows])
    assert list(export_rows(export)) == rows
    shards = tmp_path / "ray_out"
    write_jsonl(shards / "part_0.json", rows[:25])
    write_jsonl(shards / "part_1.json", rows[25:])
    for source in (export, shards):
        done = subprocess.run([sys.executable, "-m", "dj_ops.commands.report", str(source)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        out = Path(str(source.with_suffix("")) + ".report.html")
        assert out.is_file() and "60 videos" in done.stdout
        assert out.read_text().count('<article class="card') == 60


def test_the_run_log_and_the_store_are_read_when_present(tmp_path):
    export = write_jsonl(tmp_path / "out.jsonl", json.loads(json.dumps(
        synthetic_rows(5), default=jsonable)))
    work = tmp_path / "20260101_000000_abc"
    (work / "logs").mkdir(parents=True)
    events = [{"event_type": "job_start", "timestamp": 100.0},
              {"event_type": "job_complete", "timestamp": 130.0, "status": "completed",
               "duration": 30.0, "metadata": {"output_path": str(export)}}]
    (work / "events_1.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (work / "recipe.yaml").write_text(
        "process:\n  - vlm_video_captioning_mapper:\n      hf_model: m\n      caption_num: 2\n")
    (work / "logs" / "x_WARNING.txt").write_text(json.dumps({"text": "WARNING a thing\n"}))
    (tmp_path / "other_job").mkdir()  # a folder of another job (no event log) is passed over
    assert find_work_dir(export) == work
    log = read_run_log(work)
    assert (log.started, log.duration_s, log.status) == (100.0, 30.0, "completed")
    assert log.op_params == {"hf_model": "m", "caption_num": 2}
    assert log.warnings == ["WARNING a thing"] and log.warning_count == 1
    with SQLiteStore(tmp_path / "store.sqlite") as store:
        store.put_many({"k1": {"x": 1}, "k2": {"x": 2}})
    assert read_store(tmp_path / "store.sqlite")["results"] == 2
    assert read_store(tmp_path / "nothing.sqlite") == {}
    done = subprocess.run([sys.executable, "-m", "dj_ops.commands.report", str(export),
                           "--store", str(tmp_path / "store.sqlite")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    html = (tmp_path / "out.report.html").read_text()
    assert "a thing" in html and "2 results" in html and "caption_num" in html


def test_a_missing_export_is_an_error_naming_it(tmp_path):
    done = subprocess.run([sys.executable, "-m", "dj_ops.commands.report",
                           str(tmp_path / "none.jsonl")], capture_output=True, text=True)
    assert done.returncode == 2 and "none.jsonl" in done.stderr


@pytest.mark.parametrize("rows", [0, 1])
def test_tiny_runs_still_make_a_page(tmp_path, rows):
    data = json.loads(json.dumps(synthetic_rows(rows), default=jsonable))
    report = build_report(data, tmp_path / "r.html", source="s")
    assert report.path.read_text().startswith("<!DOCTYPE html>")
    assert report.stats.videos == rows
