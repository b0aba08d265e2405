"""What a run left beside its export: Data-Juicer's work folder and the op's result store.

``dj-process`` writes, in its ``work_dir`` (by default a ``<job id>`` folder beside the export),
an event log (``events_*.jsonl``: the job's start, end, duration and output path), a copy of the
recipe, and its log files (``logs/**/*_WARNING.txt.gz``, loguru's serialized records at WARNING
and above). :func:`find_work_dir` finds the folder of the latest job that wrote a given export;
:func:`read_run_log` reads what the report shows from it; :func:`read_store` counts a result
store's results and when they were written. Each returns what it found and ignores what is
missing: a report is built from the export alone as well.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import yaml

OP_NAME = "vlm_video_captioning_mapper"
MAX_LOG_LINES = 30  # warnings shown in a report
MAX_FOLDERS = 2000  # folders looked into for a job's event log


@dataclass
class RunLog:
    """What a job's work folder says about it."""

    work_dir: str = ""
    started: float = 0.0  # Unix seconds
    duration_s: float = 0.0
    status: str = ""
    op_params: dict = field(default_factory=dict)  # the captioning op's, from the recipe
    warnings: list[str] = field(default_factory=list)  # log lines at WARNING and above
    warning_count: int = 0


def _events(work_dir: Path) -> list[dict]:
    events = []
    for path in sorted(work_dir.glob("events_*.jsonl")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events


def _output_path(events: list[dict]) -> str:
    for event in events:
        path = (event.get("metadata") or {}).get("output_path")
        if path:
            return str(Path(path).resolve())
    return ""


def _folders_near(export: Path, limit: int = MAX_FOLDERS) -> list[Path]:
    """Folders where a job's event log may be: beside the export (Data-Juicer's default work
    folder, ``<job id>/``) and beside its folder, and one level below each (a recipe's
    ``work_dir`` gets a ``<job id>`` folder inside it); at most ``limit`` of them."""
    found: list[Path] = []
    for place in dict.fromkeys((export.parent, export.parent.parent)):
        for folder in _subfolders(place):
            found += [folder, *_subfolders(folder)]
            if len(found) >= limit:
                return found[:limit]
    return found


def _subfolders(folder: Path) -> list[Path]:
    """Real folders inside ``folder`` (a link to a folder is passed over: the folder it names is
    met by its own name, or is elsewhere)."""
    try:
        return sorted(p for p in folder.iterdir()
                      if p.is_dir() and not p.is_symlink() and not p.name.startswith("."))
    except OSError:
        return []


def find_work_dir(export: str | Path) -> Path | None:
    """The work folder of the latest job whose event log names ``export`` as its output,
    among the folders near it (:func:`_folders_near`)."""
    export = Path(export).resolve()
    found = []
    for folder in _folders_near(export):
        events = _events(folder)
        if events and _output_path(events) == str(export):
            found.append((max(e.get("timestamp", 0.0) for e in events), folder))
    return max(found)[1] if found else None


def _op_params(work_dir: Path) -> dict:
    """The captioning op's parameters from the recipe copied into the work folder."""
    for path in sorted(work_dir.glob("*.yaml")):
        try:
            recipe = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            continue
        for op in recipe.get("process", []) if isinstance(recipe, dict) else []:
            if isinstance(op, dict) and OP_NAME in op:
                return dict(op[OP_NAME] or {})
    return {}


def _warnings(work_dir: Path) -> tuple[list[str], int]:
    lines: list[str] = []
    count = 0
    for path in sorted(work_dir.glob("logs/**/*_WARNING.txt*")):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    text = json.loads(line)["text"].strip()
                except (ValueError, KeyError, TypeError):
                    text = line.strip()
                count += 1
                if len(lines) < MAX_LOG_LINES:
                    lines.append(text)
    return lines, count


def read_run_log(work_dir: str | Path) -> RunLog:
    """The job's times and status, the op's parameters and the warnings of its log."""
    work_dir = Path(work_dir)
    log = RunLog(work_dir=str(work_dir))
    for event in _events(work_dir):
        if event.get("event_type") == "job_start":
            log.started = float(event.get("timestamp") or 0.0)
        elif event.get("event_type") in ("job_complete", "job_failed"):
            log.duration_s = float(event.get("duration") or 0.0)
            log.status = str(event.get("status") or event.get("event_type"))
    log.op_params = _op_params(work_dir)
    log.warnings, log.warning_count = _warnings(work_dir)
    return log


def read_store(path: str | Path) -> dict:
    """A result store's results and when they were written (``{}`` when it cannot be read).

    Read-only (``mode=ro``): a report never changes the store of a job that may be running.
    """
    try:
        db = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
    except sqlite3.Error:
        return {}
    try:
        count, first, last = db.execute(
            "SELECT COUNT(*), MIN(created), MAX(created) FROM results").fetchone()
    except sqlite3.Error:
        return {}
    finally:
        db.close()
    return {"path": str(path), "results": int(count), "first_written": first or 0.0,
            "last_written": last or 0.0}
