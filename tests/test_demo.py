"""``python -m dj_ops.demo prepare``: the demo's model and dataset, with or without the project's
sample clips beside the repository."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from dj_ops.demo import prepare

ROOT = Path(__file__).resolve().parents[1]


def test_prepare_without_sample_clips_generates_its_own(tmp_path):
    out = tmp_path / "demo"
    made = prepare(out, videos_dir=tmp_path / "absent")
    rows = [json.loads(line) for line in Path(made["dataset"]).read_text().splitlines()]
    assert made["videos"] == "5" and len(rows) == 5
    assert all(Path(r["videos"][0]).parent == (out / "clips").resolve() for r in rows)
    assert all(Path(r["videos"][0]).is_file() for r in rows)
    assert (Path(made["model"]) / "config.json").is_file()


def test_help_names_the_command_and_its_options():
    proc = subprocess.run([sys.executable, "-m", "dj_ops.demo", "--help"], capture_output=True,
                          text=True, cwd=ROOT, check=True)
    assert proc.stdout.startswith("usage: python -m dj_ops.demo")
    assert "prepare" in proc.stdout and "--out" in proc.stdout and "../shared" not in proc.stdout
