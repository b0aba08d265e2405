"""Export to CogVideoX's prompt.txt / videos.txt pair, checked line by line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from data_juicer.utils.constant import Fields
from data_juicer.utils.mm_utils import SpecialTokens, get_special_tokens

from dj_ops.captioning.records import META_KEY
from dj_ops.captioning.text import captions_after_video_tokens
from dj_ops.export.cogvideox import (
    SKIP_ERROR,
    SKIP_NO_CAPTION,
    SKIP_NO_VIDEOS,
    SKIP_TOKEN_MISMATCH,
    Layout,
    count_shared_stems,
    detect_caption_key,
    export_cogvideox,
    flatten_caption,
    relative_video_path,
    row_captions,
)
from dj_ops.export.dj_output import read_rows
from tests.conftest import make_op, run_op

V, E = SpecialTokens.video, SpecialTokens.eoc
ROOT = Path(__file__).resolve().parents[1]


def meta(status: str) -> dict:
    return {META_KEY: {"status": status}}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def test_flatten_caption():
    assert flatten_caption("  A dog\nruns.\r\n\tThen  it stops. ") == "A dog runs. Then it stops."


def test_row_captions_from_text_and_from_a_field():
    row = {"text": f"{V} a cat {E} no video {E}{V} a\ndog {E}", "videos": ["a.mp4", "b.mp4"]}
    assert row_captions(row, Layout()) == [["a cat"], ["a\ndog"]]
    field_row = {"videos": ["a.mp4", "b.mp4"], "caption": ["one", ["x", "y"]]}
    assert row_captions(field_row, Layout(caption_key="caption")) == [["one"], ["x", "y"]]
    assert row_captions({"videos": ["a.mp4"]}, Layout(caption_key="caption")) == SKIP_NO_CAPTION
    assert row_captions({"text": "t", "videos": []}, Layout()) == SKIP_NO_VIDEOS
    assert row_captions({**row, Fields.meta: meta("error")}, Layout()) == SKIP_ERROR
    assert row_captions({"text": f"{V} a", "videos": ["a.mp4", "b.mp4"]},
                        Layout()) == SKIP_TOKEN_MISMATCH


def test_video_paths_relative_to_the_data_root_else_absolute(tmp_path):
    root = tmp_path / "data"
    assert relative_video_path(str(root / "videos/a.mp4"), root, tmp_path) == "videos/a.mp4"
    assert relative_video_path("data/videos/b.mp4", root, tmp_path) == "videos/b.mp4"
    assert relative_video_path("/elsewhere/c.mp4", root, tmp_path) == "/elsewhere/c.mp4"
    assert relative_video_path("../x/d.mp4", root, tmp_path) == str(tmp_path.parent / "x/d.mp4")


def test_count_shared_stems():
    assert count_shared_stems(["a/x.mp4", "b/x.mp4", "a/x.mp4", "c/y.mp4", "d/y.webm"]) == 4
    assert count_shared_stems(["a/x.mp4", "a/y.mp4"]) == 0


def test_export_line_by_line_with_skips(tmp_path):
    root = tmp_path / "dataset"
    rows = [
        {"text": f"{V} A red car\ndrives. {E}", "videos": [str(root / "videos/1.mp4")]},
        {"text": f"{V}{V} first {V}", "videos": ["/abs/2.mp4"]},  # mismatch
        {"text": f"{V} ignored {E}", "videos": ["/abs/3.mp4"], Fields.meta: meta("error")},
        {"text": "no video", "videos": []},
        {"text": f"{V}  {E}{V} second  clip {E}", "videos": ["/abs/4.mp4", "/abs/5.mp4"],
         Fields.meta: meta("captioned")},
    ]
    source = write_jsonl(tmp_path / "captions.jsonl", rows)
    summary = export_cogvideox(source, root)
    assert lines(root / "prompt.txt") == ["A red car drives.", "second clip"]
    assert lines(root / "videos.txt") == ["videos/1.mp4", "/abs/5.mp4"]
    assert (summary.rows, summary.written) == (5, 2)
    assert summary.skipped == {SKIP_TOKEN_MISMATCH: 1, SKIP_ERROR: 1, SKIP_NO_VIDEOS: 1,
                               SKIP_NO_CAPTION: 1}


def test_export_reads_a_ray_directory_of_shards_and_caption_fields(tmp_path):
    shards = tmp_path / "ray_export"
    write_jsonl(shards / "b_000001.json", [{"videos": ["/v/b.mp4"], "caption": [["b1", "b2"]]}])
    write_jsonl(shards / "a_000000.json", [{"videos": ["/v/a.mp4", "/w/a.mp4"],
                                            "caption": ["a", "a too"]}])
    summary = export_cogvideox(shards, tmp_path / "out", Layout(caption_key="caption"))
    assert lines(tmp_path / "out/prompt.txt") == ["a", "a too", "b1", "b2"]
    assert lines(tmp_path / "out/videos.txt") == ["/v/a.mp4", "/w/a.mp4", "/v/b.mp4", "/v/b.mp4"]
    assert summary.shared_stems == 2


def test_command_exports_what_the_op_wrote(tmp_path, qwen3, videos):
    samples = [{"text": f"{V} {E}", "videos": [v]} for v in videos[:3]]
    samples.append({"text": f"{V} first {E}{V} second {E}", "videos": videos[3:5]})
    rows = run_op(make_op(qwen3, keep_original_sample=False), samples)
    source = write_jsonl(tmp_path / "captions.jsonl", rows)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "dj_ops.export.cogvideox", str(source), "-o", str(tmp_path / "d")],
        capture_output=True, text=True, env=env, check=True)
    assert "pairs written: 5" in out.stdout
    special = list(get_special_tokens().values())
    expected = [(flatten_caption(c), v) for r in rows
                for c, v in zip(captions_after_video_tokens(r["text"], V, special), r["videos"])]
    assert list(zip(lines(tmp_path / "d/prompt.txt"), lines(tmp_path / "d/videos.txt"))) == [
        (c, os.path.abspath(v)) for c, v in expected]
    assert all(c for c, _ in expected)


def test_reading_an_export_that_is_not_there_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no dj-process export"):
        list(read_rows(tmp_path / "missing.jsonl"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no"):
        list(read_rows(tmp_path / "empty"))


def caption_field_rows(root: Path) -> list[dict]:
    """Rows as dj-ops-caption writes them: the text holds no caption, the field does."""
    return [{"text": f"{V} {E}", "videos": [str(root / f"{n}.mp4")], "caption": [f"clip {n}"],
             Fields.meta: meta("captioned")} for n in (1, 2)]


def test_the_caption_field_is_detected_when_the_texts_hold_none(tmp_path):
    source = write_jsonl(tmp_path / "captions.jsonl", caption_field_rows(tmp_path))
    summary = export_cogvideox(source, tmp_path)
    assert summary.detected_caption_key == "caption" and summary.written == 2
    assert lines(tmp_path / "prompt.txt") == ["clip 1", "clip 2"]
    assert "captions read from the field 'caption'" in summary.lines()[0]


def test_texts_with_captions_win_over_a_field_that_looks_like_one(tmp_path):
    rows = caption_field_rows(tmp_path)
    rows[1]["text"] = f"{V} from the text {E}"
    assert detect_caption_key(rows, Layout()) is None


def test_two_fields_that_could_hold_the_captions_are_refused(tmp_path):
    rows = [{**r, "summary": ["other"]} for r in caption_field_rows(tmp_path)]
    with pytest.raises(ValueError, match=r"\['caption', 'summary'\].*--caption-key"):
        detect_caption_key(rows, Layout())


def run_export_command(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "dj_ops.export.cogvideox", *args],
                          capture_output=True, text=True, env=env)


def test_command_reads_dj_ops_caption_output_without_options(tmp_path):
    source = write_jsonl(tmp_path / "c.jsonl", caption_field_rows(tmp_path))
    proc = run_export_command(str(source), "-o", str(tmp_path / "d"))
    assert proc.returncode == 0 and "pairs written: 2" in proc.stdout


def test_command_fails_with_the_fix_when_nothing_is_written(tmp_path):
    rows = [{"text": f"{V} {E}", "videos": ["/v/a.mp4"], "caption": 3}]  # no caption anywhere
    proc = run_export_command(str(write_jsonl(tmp_path / "c.jsonl", rows)), "-o",
                              str(tmp_path / "d"))
    assert proc.returncode == 1 and "pairs written: 0" in proc.stdout
    assert "--caption-key" in proc.stderr
    missing = run_export_command(str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "d"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
