"""The run report of a real ``dj-process`` run (tiny Qwen3-VL, real or generated clips, a missing
and a corrupt file): written by the op at the end of its run, and by ``dj-ops-report`` from the
export; then opened in headless Chromium (marker ``browser``), offline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from data_juicer.utils.constant import Fields

from dj_ops.captioning.records import META_KEY, NO_TIMING
from tests.conftest import FAST_FRAMES, FAST_SAMPLING, make_op, run_op
from tests.test_dj_process import run_dj_process

V, E = "<__dj__video>", "<|__dj__eoc|>"
CHROMIUM = "/usr/bin/chromium"
# Debian's Chromium run headless as root on a machine without a network (python.md's flags).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def report_run(tmp_path_factory, qwen3, videos) -> dict:
    """One dj-process run with report_path set, then dj-ops-report on its export."""
    tmp = tmp_path_factory.mktemp("report_run")
    (tmp / "corrupt.mp4").write_bytes(Path(videos[0]).read_bytes()[:700])
    paths = [*videos, str(tmp / "missing.mp4"), str(tmp / "corrupt.mp4")]
    samples = [{"text": f"{V} {E}", "videos": [p]} for p in paths]
    params = {"hf_model": qwen3, "keep_original_sample": False, **FAST_FRAMES,
              "sampling_params": FAST_SAMPLING, "seed": 0, "report_path": str(tmp / "op.html")}
    proc, export = run_dj_process(tmp, samples, params)
    command = subprocess.run([sys.executable, "-m", "dj_ops.commands.report", str(export),
                              "-o", str(tmp / "command.html")],
                             capture_output=True, text=True, timeout=600)
    assert command.returncode == 0, command.stderr[-3000:]
    rows = [json.loads(line) for line in export.read_text().splitlines()]
    return {"logs": proc.stdout + proc.stderr, "rows": rows, "paths": paths, "tmp": tmp,
            "pages": {"op": tmp / "op.html", "command": tmp / "command.html"},
            "command_out": command.stdout}


def test_the_op_writes_the_report_and_its_closing_lines_name_it(report_run):
    page = report_run["pages"]["op"]
    assert page.is_file()
    assert f"vlm_video_captioning_mapper: report: {page}" in report_run["logs"]
    assert f"{len(report_run['paths'])} of {len(report_run['paths'])} videos shown" \
        in report_run["logs"]
    # and the few lines that end the run name it last
    assert report_run["logs"].rstrip().endswith(f"report: {page} (open it in a browser)")


def test_records_carry_strips_and_timing_when_a_report_is_asked_for(report_run):
    records = [r["__dj__meta__"][META_KEY] for r in report_run["rows"]]
    videos = [r["videos"][0] for r in records]
    ok = [v for v, r in zip(videos, records, strict=True) if r["status"] == "captioned"]
    failed = [v for v, r in zip(videos, records, strict=True) if r["status"] == "error"]
    assert len(ok) == 5 and {v["error_kind"] for v in failed} == {"missing_file",
                                                                  "decode_error"}
    for video in ok:
        strip = video["thumbnail"]
        assert strip["image"] and strip["width"] > 0 and strip["height"] <= 64
        assert set(strip["timestamps"]) <= set(video["timestamps"])  # frames the model saw
        timing = video["timing"]
        assert timing["decode_s"] > 0 and timing["generate_s"] > 0 and timing["finished"] > 0
    for video in failed:
        assert video["thumbnail"]["image"] == "" and video["timing"]["finished"] > 0


def test_without_a_report_records_keep_the_same_empty_fields(qwen3, videos):
    """Off (the default), the fields are there with their empty values: the same output on
    every run, one schema for every row. Strips and timing can be asked for on their own."""
    samples = [{"text": f"{V} {E}", "videos": [videos[1]]}]
    plain, asked = (run_op(make_op(qwen3, keep_original_sample=False, decode_workers=0,
                                   **params), samples)[0][Fields.meta][META_KEY]["videos"][0]
                    for params in ({}, {"thumbnails": 1.0, "record_timing": True}))
    assert plain["timing"] == NO_TIMING
    assert plain["thumbnail"] == {"image": "", "timestamps": [], "width": 0, "height": 0}
    assert asked["thumbnail"]["image"] and asked["timing"]["generate_s"] > 0
    assert asked["timing"]["decode_s"] > 0  # the inline decoder is timed too


@pytest.mark.slow
def test_report_path_is_refused_inside_a_ray_job(qwen3):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        with pytest.raises(ValueError, match="dj-ops-report EXPORT_FOLDER"):
            make_op(qwen3, report_path="report.html")
        make_op(qwen3, thumbnails=1.0)  # strips alone are fine: the command reads them
    finally:
        ray.shutdown()


def test_the_command_finds_the_run_log_beside_the_export(report_run):
    out = report_run["command_out"]
    assert "7 videos: 5 captioned, 2 failed" in out and "run log" in out
    html = report_run["pages"]["command"].read_text()
    assert "op parameters (recipe)" in html and "report_path" in html


def _browser_or_skip():
    required = os.environ.get("DJ_OPS_REQUIRE_BROWSER") == "1"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if required:
            raise
        pytest.skip("playwright is not installed (pip install playwright; it drives the "
                    "system's Chromium)")
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        if required:
            pytest.fail(f"DJ_OPS_REQUIRE_BROWSER=1 but no Chromium at {CHROMIUM}")
        pytest.skip("Chromium is not installed: apt-get install -y chromium")
    return sync_playwright


def _save_small(page, full: Path, out: Path, width: int = 900) -> None:
    """The whole page, scaled to ``width`` and reduced to 128 colours: the README's picture."""
    from PIL import Image

    page.screenshot(path=str(full), full_page=True)
    image = Image.open(full).convert("RGB")
    image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    image.quantize(128).save(out, optimize=True)


def _visible(page) -> list[str]:
    return page.eval_on_selector_all(
        ".card", "cs => cs.filter(c => c.offsetParent !== null).map(c => c.dataset.status)")


@pytest.mark.browser
@pytest.mark.parametrize("which", ["command", "op"])
def test_the_report_opens_offline_in_chromium(report_run, which):
    sync_playwright = _browser_or_skip()
    page_path = report_run["pages"][which]
    errors, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or CHROMIUM,
                                    args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_path.as_uri(), wait_until="load")
            # nothing but the page itself and its data URLs: it opens offline
            assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
            strips = page.eval_on_selector_all(
                ".card img", "is => is.map(i => [i.complete, i.naturalWidth])")
            assert len(strips) == 5 and all(done and width > 0 for done, width in strips)
            charts = page.eval_on_selector_all(
                ".chart img", "is => is.map(i => i.naturalWidth)")
            assert len(charts) >= 5 and all(width > 0 for width in charts)
            assert sorted(_visible(page)) == ["captioned"] * 5 + ["error"] * 2
            page.select_option("#filter-status", "error")
            assert _visible(page) == ["error", "error"]
            assert page.text_content("#filter-count") == "2 of 7 shown"
            page.select_option("#filter-status", "")
            page.fill("#filter-text", "missing.mp4")
            assert _visible(page) == ["error"]
            page.fill("#filter-text", "")
            page.select_option("#filter-flag", "-")
            unflagged = page.eval_on_selector_all(
                ".card", "cs => cs.filter(c => c.offsetParent !== null).map(c => c.dataset.flags)")
            assert all(flags == "" for flags in unflagged)
            page.select_option("#filter-flag", "")
            page.evaluate("window.scrollTo(0, 0)")  # the filter bar sticks to the top
            shot = report_run["tmp"] / f"{which}.png"
            page.screenshot(path=str(shot), full_page=False)
            assert shot.stat().st_size > 10_000
            if which == "command" and os.environ.get("DJ_OPS_REPORT_SCREENSHOT"):
                _save_small(page, report_run["tmp"] / "full.png",
                            Path(os.environ["DJ_OPS_REPORT_SCREENSHOT"]))
        finally:
            browser.close()
    assert errors == []


def test_a_long_videos_strip_has_a_tile_per_window_and_the_page_lists_its_windows(
        qwen3, tmp_path):
    """Windows on: the strip is the middle frame of each window (at most max_frames of them),
    each at a time inside its window; the page shows the windows beside the merged caption."""
    from dj_ops.report.build import build_report
    from dj_ops.testing.clips import make_clip

    clip = str(make_clip(tmp_path / "long.mp4", seconds=40, fps=2))
    op = make_op(qwen3, keep_original_sample=False, window_seconds=15.0, window_overlap=5.0,
                 fps=1.0, max_frames=4, thumbnails=1.0, record_timing=True)
    (row,) = run_op(op, [{"text": f"{V} {E}", "videos": [clip]}])
    video = row[Fields.meta][META_KEY]["videos"][0]
    spans = [(w["start"], w["end"]) for w in video["windows"]]
    strip = video["thumbnail"]
    assert len(spans) == 4 and len(strip["timestamps"]) == 4
    for (start, end), time in zip(spans, strip["timestamps"], strict=True):
        assert start <= time <= end
    assert video["timing"]["finished"] > 0
    html = build_report([row], tmp_path / "r.html", source="s").path.read_text()
    assert "4 windows (merged above)" in html and html.count("data:image/jpeg") == 1


def test_strips_and_timing_through_a_self_batching_backend(qwen3, videos):
    """The openai backend (fed continuously, ops/streaming.py) against a real loopback server:
    each video's generation time is its latency shared by the requests in flight."""
    from dj_ops.testing.openai_server import CompletionServer

    samples = [{"text": f"{V} {E}", "videos": [v]} for v in videos[:3]]
    with CompletionServer(qwen3) as server:
        rows = run_op(make_op(qwen3, backend="openai", keep_original_sample=False,
                              model_params={"api_base": server.url}, thumbnails=1.0,
                              record_timing=True), samples)
    for row in rows:
        video = row[Fields.meta][META_KEY]["videos"][0]
        assert video["thumbnail"]["image"] and video["timing"]["generate_s"] > 0
        assert video["timing"]["decode_s"] > 0 and video["timing"]["finished"] > 0


def test_videos_reused_from_the_store_are_shown_as_reused_without_a_strip(
        qwen3, videos, tmp_path):
    """Nothing is decoded for a stored caption: its record keeps no strip and the page says
    why; the store's results are counted in the summary."""
    from dj_ops.report.build import build_report
    from dj_ops.report.runlog import read_store

    store = str(tmp_path / "store.sqlite")
    samples = [{"text": f"{V} {E}", "videos": [videos[2]]}]
    first, again = (run_op(make_op(qwen3, keep_original_sample=False, result_store=store,
                                   thumbnails=1.0), samples)[0] for _ in range(2))
    assert first[Fields.meta][META_KEY]["videos"][0]["thumbnail"]["image"]
    reused = again[Fields.meta][META_KEY]["videos"][0]
    assert reused["from_store"] and reused["thumbnail"]["image"] == ""
    html = build_report([again], tmp_path / "r.html", source="s",
                        store=read_store(store)).path.read_text()
    assert "reused, not decoded in this run" in html and "1 results" in html
