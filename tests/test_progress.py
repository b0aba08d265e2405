"""Progress per video, not per Data-Juicer batch: each op process counts its videos as they
finish and the job's main process shows their sum; and the lines that end every run."""

from __future__ import annotations

import functools
import subprocess
import sys
import textwrap

from data_juicer.utils.mm_utils import SpecialTokens
from data_juicer.utils.model_utils import get_model

from dj_ops.runtime.progress import (
    CAPTIONED,
    FAILED,
    REUSED,
    Counts,
    ProgressBoard,
    VideoProgress,
    progress_line,
)
from dj_ops.runtime.run_summary import RunTotals, stop_lines, summary_lines
from tests.conftest import make_op
from tests.job_support import dj_process, dj_process_recipe, make_clips

TOKEN = f"{SpecialTokens.video} {SpecialTokens.eoc}"


def test_the_line_says_done_total_failed_reused_rate_and_eta():
    counts = Counts(captioned=6, failed=2, reused=4)
    assert progress_line(counts, 4.0, 20) == (
        "12/20 videos (failed 2, reused 4), 2.00 videos/s, ETA 4 s")
    assert progress_line(counts, 4.0) == "12 videos (failed 2, reused 4), 2.00 videos/s"
    assert "ETA" not in progress_line(Counts(reused=3), 1.0, 5)  # nothing generated yet


def test_a_batch_end_counts_the_videos_refused_before_captioning_as_failed():
    progress = VideoProgress("op", board=None, every_s=1e9)
    for outcome in (CAPTIONED, REUSED, FAILED):
        progress.video(outcome)
    progress.batch_done(videos=5)  # two videos of samples refused before any slot was made
    assert progress.counts == Counts(pid=progress.counts.pid, captioned=1, failed=3, reused=1,
                                     batches=1)


SENDER = """
import sys
from dj_ops.runtime.progress import VideoProgress, CAPTIONED, FAILED
progress = VideoProgress("op", board=sys.argv[1])
for _ in range(int(sys.argv[2])):
    progress.video(CAPTIONED)
progress.video(FAILED)
progress.batch_done(int(sys.argv[2]) + 1)
progress.close()
"""


def test_the_board_sums_every_process():
    """Two real processes report to one board, as Data-Juicer's np workers do."""
    finals: dict[int, Counts] = {}
    board = ProgressBoard("op", total=9, terminal=False,
                          on_update=lambda c: finals.__setitem__(c.pid, c))
    try:
        for n in (3, 4):
            subprocess.run([sys.executable, "-c", textwrap.dedent(SENDER), board.address,
                            str(n)], check=True, timeout=120)
    finally:
        board.close()  # after the senders: their messages are in the socket's queue
    assert len(board.by_process) == 2
    assert board.counts == Counts(captioned=7, failed=2, batches=2)
    assert board.line().startswith("9/9 videos (failed 2, reused 0)")


def test_progress_is_per_video_inside_one_data_juicer_batch(qwen3, videos):
    """One Data-Juicer batch of five videos, one micro-batch each: the board hears of every
    video as it finishes, before the batch ends (its ``batches`` count is still 0)."""
    from dj_ops.ops.captioner import Captioner, ProcessPlacement
    from dj_ops.ops.vlm_video_captioning_mapper import OP_NAME

    paths = [videos[0], videos[1], videos[0], videos[-1], "/no/such/video.mp4"]
    samples = {"text": [TOKEN] * 5, "videos": [[p] for p in paths]}
    op = make_op(qwen3, keep_original_sample=False, generation_batch_size=1)
    updates: list[Counts] = []
    board = ProgressBoard(OP_NAME, total=5, terminal=False, on_update=updates.append)
    captioner = Captioner(op.config, functools.partial(get_model, op.model_key), OP_NAME,
                          board.address)
    try:
        captioner.setup(ProcessPlacement())
        captioner.caption(samples)
    finally:
        captioner.close()
        board.close()
    within = [u for u in updates if u.batches == 0]
    assert [u.done for u in within] == [1, 2, 3, 4, 5]  # one message per video, in the batch
    assert within[-1].failed == 1 and updates[-1].batches == 1
    # the same video in two samples is decoded once but counts for each
    assert updates[-1].captioned == 4


def test_end_lines():
    totals = RunTotals.of([{"status": "captioned", "candidate_index": 0,
                            "videos": [{"path": "a", "from_store": True}]},
                           {"status": "captioned", "candidate_index": 1,  # a's next candidate
                            "videos": [{"path": "a", "from_store": True}]},
                           {"status": "error", "videos": [{"error_kind": "missing_file"}]},
                           None], 2.0)
    assert (totals.captioned, totals.failed, totals.videos, totals.reused) == (2, 1, 1, 1)
    assert summary_lines(totals, "out.jsonl", "s.sqlite") == [
        "captioned: 2  failed: 1  time: 2.0 s  videos/s: 0.5",
        "store: s.sqlite (1 videos reused from it, 0 generated)",
        "errors: missing_file 1 (each failed row's __dj__meta__ says why)",
        "output: out.jsonl"]
    assert stop_lines("SIGINT", 3.0, None, 0, 0)[0] == (
        "stopped by SIGINT after 3.0 s: no result store, so nothing was kept")


def test_dj_process_shows_the_sum_of_its_workers_and_ends_with_what_happened(tmp_path, qwen3):
    """``np: 2``: one progress line for both workers, then, last, the run's end lines."""
    clips = make_clips(tmp_path / "clips", 5) + [tmp_path / "missing.mp4"]
    store = tmp_path / "store.sqlite"
    recipe = dj_process_recipe(tmp_path, clips, qwen3, np=2, result_store=str(store),
                               sampling_params={"max_new_tokens": 4})
    job = dj_process(recipe, tmp_path / "job.log")
    assert job.proc.wait(timeout=900) == 0, job.output()[-3000:]
    log = job.output()
    assert "vlm_video_captioning_mapper progress: 6/6 videos (failed 1, reused 0)" in log
    assert "(2 processes)" in log
    lines = log.splitlines()
    assert lines[-5] == "== vlm_video_captioning_mapper =="
    assert lines[-4].startswith("captioned: 5  failed: 1  time: ")
    assert lines[-3:] == [
        f"store: {store} (0 videos reused from it, 5 generated)",
        "errors: missing_file 1 (each failed row's __dj__meta__ says why)",
        f"output: {tmp_path / 'out' / 'out.jsonl'} (records in it)"]


def test_the_examples_in_the_runtime_modules_hold():
    import doctest

    from dj_ops.runtime import progress, run_summary

    for module in (progress, run_summary):
        assert doctest.testmod(module).failed == 0
