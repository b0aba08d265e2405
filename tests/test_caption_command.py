"""``dj-ops-caption``: a folder or list of videos to a jsonl in one command, run as users do."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from data_juicer.utils.constant import Fields

from dj_ops.captioning.records import META_KEY
from dj_ops.commands.caption import find_videos, op_params, parse_args
from dj_ops.testing.clips import make_clip, write_bytes

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"captioned: (\d+)  failed: (\d+)  time: ([\d.]+) s  videos/s: ([\d.]+)")


@pytest.fixture
def folder(tmp_path) -> Path:
    videos = tmp_path / "videos"
    (videos / "sub").mkdir(parents=True)
    make_clip(videos / "b.mp4", 2.0, 10, 64, 48)
    make_clip(videos / "sub" / "a.MOV", 1.5, 10, 48, 64)
    write_bytes(videos / "broken.mp4", b"not a video")
    write_bytes(videos / "notes.txt", b"not listed")
    return videos


def run_command(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "dj_ops.commands.caption", *args],
                          capture_output=True, text=True, env=env, timeout=600)


def test_find_videos_in_a_folder_and_a_list_file(folder, tmp_path):
    expected = [str(folder / "b.mp4"), str(folder / "broken.mp4"), str(folder / "sub/a.MOV")]
    assert find_videos(folder) == expected
    listing = folder / "list.txt"
    listing.write_text("b.mp4\n\n  sub/a.MOV \n")
    assert find_videos(listing) == [expected[0], expected[2]]
    with pytest.raises(FileNotFoundError):
        find_videos(tmp_path / "missing")


def test_options_map_to_op_parameters():
    args = parse_args(["v", "-o", "o.jsonl", "--model", "m", "--caption-num", "3", "--keep",
                       "all", "--max-new-tokens", "64"])
    params = op_params(args)
    assert {k: params[k] for k in ("hf_model", "caption_key", "caption_num",
                                   "keep_candidate_mode", "seed", "generation_batch_size",
                                   "on_error", "sampling_params", "result_store")} == {
        "hf_model": "m", "caption_key": "caption", "caption_num": 3,
        "keep_candidate_mode": "all", "seed": 0, "generation_batch_size": 8,
        "on_error": "keep", "sampling_params": {"max_new_tokens": 64},
        "result_store": "o.jsonl.store.sqlite"}
    assert "backend" not in params  # unset: the op's default
    assert "result_store" not in op_params(parse_args(["v", "-o", "o", "--no-store"]))
    assert op_params(parse_args(["v", "-o", "o", "--store", "s.db"]))["result_store"] == "s.db"
    args = parse_args(["v", "-o", "o", "--backend", "openai", "--api-base", "http://h:1/v1",
                       "--on-error", "drop", "--model-params", '{"max_concurrency": 2}'])
    assert op_params(args)["model_params"] == {"max_concurrency": 2, "api_base": "http://h:1/v1"}
    assert (op_params(args)["backend"], op_params(args)["on_error"]) == ("openai", "drop")


def test_help_is_plain_and_shows_the_defaults():
    proc = run_command("--help")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: dj-ops-caption")
    assert proc.stderr == ""  # no log line before the help
    assert "``" not in proc.stdout and "(default: transformers)" in proc.stdout
    assert "--on-error" in proc.stdout and "--backend" in proc.stdout


@pytest.mark.parametrize("case", ["missing_model", "missing_input"])
def test_a_missing_path_is_one_line_naming_it(case, folder, tmp_path):
    model = tmp_path / "no" / "model" if case == "missing_model" else "Qwen/Qwen3-VL-8B-Instruct"
    videos = folder if case == "missing_model" else tmp_path / "no_videos"
    proc = run_command(str(videos), "-o", str(tmp_path / "o.jsonl"), "--model", str(model))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    missing = model if case == "missing_model" else videos
    assert str(missing) in proc.stderr
    assert ("no such folder" if case == "missing_model" else "neither a folder") in proc.stderr
    assert "Repo id" not in proc.stderr and not (tmp_path / "o.jsonl").exists()


def test_command_captions_a_folder(folder, tmp_path, qwen3):
    out = tmp_path / "out" / "captions.jsonl"
    proc = run_command(str(folder), "-o", str(out), "--model", qwen3, "--caption-num", "2",
                       "--keep", "all", "--max-frames", "4", "--max-new-tokens", "8",
                       "--num-proc", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    captioned, failed, seconds, rate = SUMMARY.search(proc.stdout).groups()
    assert (int(captioned), int(failed)) == (2, 1) and float(seconds) > 0
    assert float(rate) == pytest.approx(2 / float(seconds), abs=2e-3)  # captioned videos only
    assert "errors: not_a_video 1" in proc.stdout
    assert proc.stdout.splitlines()[-1] == f"output: {out}"  # the last line says where
    assert "| INFO " not in proc.stderr  # Data-Juicer's INFO logs are hidden
    assert f"store: {out}.store.sqlite (0 videos reused from it, 2 generated)" in proc.stdout
    assert "%" in proc.stderr  # the progress bar
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["videos"] for r in rows] == [[str(folder / n)] for n in
                                           ("b.mp4", "broken.mp4", "sub/a.MOV")]
    statuses = [r[Fields.meta][META_KEY]["status"] for r in rows]
    assert statuses == ["captioned", "error", "captioned"]
    # mode 'all': per video the list of its candidates; none for the broken video
    assert [len(r["caption"][0]) for r in rows] == [2, 0, 2]
    assert all(c for r in rows for c in r["caption"][0])
    again = run_command(str(folder), "-o", str(out), "--model", qwen3, "--caption-num", "2",
                        "--keep", "all", "--max-frames", "4", "--max-new-tokens", "8",
                        "--num-proc", "1")
    assert "(2 videos reused from it, 0 generated)" in again.stdout  # the same command resumes
    assert [json.loads(line)["caption"] for line in out.read_text().splitlines()] == [
        r["caption"] for r in rows]


def test_command_fails_clearly_without_videos(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run_command(str(tmp_path / "empty"), "-o", str(tmp_path / "o.jsonl"))
    assert proc.returncode == 1 and "no video found" in proc.stderr and "Traceback" not in (
        proc.stderr)
