"""Run a real ``dj-process`` or ``dj-ops-caption`` job in the background on generated clips, with
a result store, and follow every process of it (psutil), for the tests that stop or kill jobs."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml
from data_juicer.utils.mm_utils import SpecialTokens

from dj_ops.testing.clips import make_clip
from tests.conftest import FAST_FRAMES

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
VIDEOS = 16
# long enough captions that a job is still running when its first result is stored
SAMPLING = {"max_new_tokens": 24, "min_new_tokens": 24}


def make_clips(folder: Path, count: int = VIDEOS) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [make_clip(folder / f"c{i:02d}.mp4", 1.0 + (i % 3) * 0.5, 8, 64, 48)
            for i in range(count)]


def dj_process_recipe(tmp_path: Path, clips: list[Path], model: str, np: int = 2,
                      **op_params) -> Path:
    dataset = tmp_path / "videos.jsonl"
    token = f"{SpecialTokens.video} {SpecialTokens.eoc}"
    dataset.write_text("".join(json.dumps({"text": token, "videos": [str(c)]}) + "\n"
                               for c in clips))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "project_name": "dj_ops_job", "dataset_path": str(dataset), "np": np,
        "export_path": str(tmp_path / "out" / "out.jsonl"), "work_dir": str(tmp_path / "work"),
        "keep_stats_in_res_ds": True,
        "process": [{"vlm_video_captioning_mapper": {
            "hf_model": model, "keep_original_sample": False, "seed": 0, **FAST_FRAMES,
            "generation_batch_size": 1, "sampling_params": SAMPLING, **op_params}}]}))
    return recipe


def stored(store: Path) -> int:
    """Results in the store (0 before it exists); read-only, never waits on writers long."""
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30) as db:
            return db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@dataclass
class Job:
    """A job in the background and every process seen below its main process."""

    proc: subprocess.Popen
    log: Path
    seen: dict[int, psutil.Process] = field(default_factory=dict)
    commands: dict[int, str] = field(default_factory=dict)  # pid -> "name: command line"

    @classmethod
    def start(cls, args: list[str], log: Path) -> Job:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with log.open("w") as out:
            proc = subprocess.Popen(args, env=env, text=True, stdout=out,
                                    stderr=subprocess.STDOUT)
        return cls(proc, log)

    def follow(self) -> None:
        """Note every process below the main one now (they are started as the job goes)."""
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return
        for child in children:
            self.seen.setdefault(child.pid, child)
            try:  # the latest: vLLM renames its engine core (setproctitle) once started
                self.commands[child.pid] = f"{child.name()}: {' '.join(child.cmdline())}"
            except psutil.Error:
                self.commands.setdefault(child.pid, "")

    def follow_until(self, condition, timeout_s: float = 900.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert self.proc.poll() is None, f"the job ended first:\n{self.output()[-3000:]}"
            assert time.monotonic() < deadline, "timed out"
            self.follow()
            time.sleep(0.05)
        self.follow()

    def left(self) -> list[psutil.Process]:
        """The processes seen that still run (zombies do not)."""
        running = []
        for process in self.seen.values():
            try:
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    running.append(process)
            except psutil.NoSuchProcess:
                pass
        return running

    def kinds(self) -> set[str]:
        """What the processes seen were: ``decode_worker``, ``engine_watchdog`` or ``python``
        (Data-Juicer's workers and its Manager run the main's own command line)."""
        found = set()
        for command in self.commands.values():
            found.add("decode_worker" if "dj_ops.video.worker" in command else
                      "engine_watchdog" if "engine_watchdog" in command else "python")
        return found

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill_everything(self) -> None:
        """Clean-up after a failed test: what is left is killed."""
        self.proc.kill()
        self.proc.wait()
        for process in self.left():
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass


def wait_gone(job: Job, timeout_s: float = 10.0) -> list[psutil.Process]:
    """What is still running ``timeout_s`` seconds after the main process ended (or less)."""
    deadline = time.monotonic() + timeout_s
    while job.left() and time.monotonic() < deadline:
        time.sleep(0.05)
    return job.left()


def dj_process(recipe: Path, log: Path) -> Job:
    return Job.start([str(BIN / "dj-process"), "--config", str(recipe)], log)


def dj_ops_caption(folder: Path, output: Path, model: str, log: Path, *extra: str) -> Job:
    return Job.start([str(BIN / "dj-ops-caption"), str(folder), "-o", str(output), "--model",
                      model, "--max-frames", "4", "--max-new-tokens", "24",
                      "--generation-batch-size", "1", *extra], log)
