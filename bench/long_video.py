"""A long video's windows decoded in one pass vs. the same windows as separate clips.

A generated 10-minute clip (320x240, 15 fps, H.264) in 60 s windows overlapping 10 s (12 windows),
each window sampled as the op does (1 fps, at most 32 frames, 448x448 pixels at most). Three ways
to get every window's frames, each run in a fresh process (so that its peak resident memory,
``ru_maxrss``, is its own), rounds interleaved:

- ``one_pass``: what the op does with ``window_seconds`` (``stream_windowed``: one pass over the
  file hands each window over as soon as it is decoded, keeping only the frames the next windows
  share; here each window is dropped once counted, as the op drops it once captioned);
- ``separate_clips``: the windows cut beforehand into 12 files (re-encoded with PyAV, not timed),
  each decoded as a clip of its own (what captioning pre-cut clips costs);
- ``per_window``: the whole file decoded once per window with ``video_start``/``video_end``
  (seeking to each window).

The captioning requests are the same in all three (the same windows' frames), so only decoding
differs. ``python -m bench.long_video [--rounds R]``; results in bench/results/long_video.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av

from bench.measure import load_check, load_now, publish_note, save, spread
from dj_ops.testing.clips import make_clip
from dj_ops.video.decode import decode_video
from dj_ops.video.decode_windows import WindowedFrames, stream_windowed
from dj_ops.video.settings import FrameSettings

SECONDS, FPS, WIDTH, HEIGHT = 600, 15, 320, 240
JOB = WindowedFrames(FrameSettings(fps=1.0, max_frames=32, size_factor=32), 60.0, 10.0)
VARIANTS = ("one_pass", "separate_clips", "per_window")


def cut(path: Path, folder: Path, seconds: int = SECONDS) -> list[str]:
    """The windows of ``path`` as separate files, re-encoded (frames inside each window)."""
    clips = []
    for window in JOB.windows(seconds):
        out = folder / f"window{window.index:02d}.mp4"
        with av.open(str(path)) as source, av.open(str(out), "w") as sink:
            stream = sink.add_stream("libx264", rate=FPS)
            stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
            written = 0
            for frame in source.decode(video=0):
                if frame.time > window.end + 1e-6:
                    break
                if frame.time >= window.start - 1e-6:
                    frame.pts, frame.time_base = written, Fraction(1, FPS)  # from 0
                    sink.mux(stream.encode(frame))
                    written += 1
            sink.mux(stream.encode(None))
        clips.append(str(out))
    return clips


def decode_variant(variant: str, path: str, clips: list[str], seconds: int = SECONDS) -> int:
    """Every window's frames the ``variant`` way; the frames obtained."""
    if variant == "one_pass":
        return sum(len(window.frames) for window in stream_windowed(path, JOB))
    if variant == "separate_clips":
        return sum(len(decode_video(clip, JOB.frames).frames) for clip in clips)
    return sum(len(decode_video(path, replace(JOB.frames, video_start=w.start,
                                              video_end=w.end)).frames)
               for w in JOB.windows(seconds))


def child(variant: str, path: str, clips: list[str], seconds: int) -> None:
    """One measurement, in this fresh process: JSON on stdout."""
    start, cpu = time.perf_counter(), time.process_time()
    frames = decode_variant(variant, path, clips, seconds)
    print(json.dumps({"seconds": time.perf_counter() - start,
                      "cpu_seconds": time.process_time() - cpu, "frames": frames,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure_once(variant: str, path: Path, clips: list[str], seconds: int) -> dict:
    proc = subprocess.run([sys.executable, "-m", "bench.long_video", "--child", variant,
                           str(seconds),
                           str(path), *clips], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(rounds: int, folder: Path, seconds: int = SECONDS) -> dict:
    path = make_clip(folder / "long.mp4", seconds, FPS, WIDTH, HEIGHT)
    clips = cut(path, folder, seconds)
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for _ in range(rounds):
        for variant in VARIANTS:
            runs[variant].append(measure_once(variant, path, clips, seconds))
    ratios = {v: spread([r["seconds"] / b["seconds"] for r, b in
                         zip(runs[v], runs["one_pass"], strict=True)]) for v in VARIANTS[1:]}
    return {
        "clip": {"seconds": seconds, "fps": FPS, "size": f"{WIDTH}x{HEIGHT}", "codec": "h264"},
        "windows": {"count": len(clips), "seconds": JOB.seconds, "overlap": JOB.overlap,
                    "fps": JOB.frames.fps, "max_frames": JOB.frames.max_frames},
        "memory_measure": "peak RSS (ru_maxrss) of the fresh decoding process",
        "variants": {v: {"seconds": spread([r["seconds"] for r in runs[v]]),
                         "cpu_seconds": spread([r["cpu_seconds"] for r in runs[v]]),
                         "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in runs[v]),
                         "frames": runs[v][0]["frames"]} for v in VARIANTS},
        "time_vs_one_pass": ratios,
        "rounds": rounds,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=SECONDS, help="the clip's length")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--save", default="long_video", help="results name ('' to not save)")
    args = parser.parse_args(argv)
    if args.child:
        variant, seconds, path, *clips = args.child
        child(variant, path, clips, int(seconds))
        return
    loads = [load_now()]
    with tempfile.TemporaryDirectory() as folder:
        result = measure(args.rounds, Path(folder), args.seconds)
    result["load"] = load_check([*loads, load_now()])
    print(json.dumps(result, indent=2))
    print(publish_note(result["load"]))
    if args.save:
        print(save(args.save, result))


if __name__ == "__main__":
    main()
