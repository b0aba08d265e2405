"""Decoding benchmark (not a test): ratios measured in one process, against baselines run in
the same process.

1. CPU preprocessing per video (decode + sample + resize) of each decoder, against the floor:
   bare PyAV decoding exactly the wanted frames, already known, at the already known size (the
   better of decoding through and seeking to each frame). ``pyav_all_frames`` is the PyAV
   decoder without skipping unreferenced frames; ``pyav_prescan`` is it with the pass that
   demuxed every packet of a file with B-frames before decoding it (what the decoder did until
   it read each file once). The ``ffmpeg`` command line is timed for reference (its start-up
   makes it slower). Bytes read per file (the process's I/O counter) over the file's size, for
   each PyAV way and for one demuxing pass over the file (``one_pass``).
2. Decoding spread over the cores: the decoding pool's throughput with 1 worker and with one
   per core.
3. Op throughput with prefetch on vs off, generation and decoding taking about as long: torch
   on one thread stands for the accelerator, the other cores decode.

Writes ``bench/results/decode.json`` and ``decode.md``. Usage::

    python -m bench.bench_decode [--repeats 5] [--requests 48] [--batch 4] [--parts ...]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from functools import cache, partial
from pathlib import Path

import av
import numpy as np
import psutil

from dj_ops.testing.clips import make_clip, sample_video_paths
from dj_ops.testing.reads import bytes_read, make_noisy_clip, read_once, remux
from dj_ops.video import FrameSettings, decode_video
from dj_ops.video.decode import _probe
from dj_ops.video.decoders import DECODERS, available_cores, resolve_decoder
from dj_ops.video.pool import DecodePool
from dj_ops.video.skipping import can_skip

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SHARED = ROOT.parent / "shared" / "data" / "videos"
SCENARIOS = {
    "fps 2/s, up to 32 frames": FrameSettings(),
    "uniform, 8 frames": FrameSettings(strategy="uniform", num_frames=8),
}
PARTS = ["preprocessing", "pool", "prefetch"]
# (name, seconds, fps, width, height, keyframe interval): short GOPs, where seeking pays.
GENERATED = [("gop12_640x360.mp4", 20.0, 30, 640, 360, 12),
             ("gop30_1280x720.mp4", 10.0, 30, 1280, 720, 30)]
# Clips of a few MB with B-frames (noise: picture data outweighs FFmpeg's first 32 kB read),
# the index at the end (FFmpeg's default) and, in Matroska, no frame count (packets scanned).
NOISY = "noisy_bframes.mp4"
NOISY_MKV = "noisy_bframes.mkv"
# The PyAV ways whose bytes read are measured (``one_pass``: one demuxing pass, for reference).
READ_WAYS = ("pyav", "pyav_prescan", "pyav_all_frames", "floor_sequential")


def best_times(repeats: int, runs: dict) -> tuple[dict[str, float], dict[str, float]]:
    """Fastest of ``repeats`` calls of each ``runs[name] = (function, *args)``: wall seconds,
    and CPU seconds of this process (FFmpeg's threads included; not a child's, as the ffmpeg
    command's). The runs take turns within each round, so that load from other users hits them
    alike; CPU time is the steadier measure on a loaded machine."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, (function, *args) in runs.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            function(*args)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return ({name: min(values) for name, values in times.items()},
            {name: min(values) for name, values in cpu.items()})


def floor_sequential(path: str, wanted: list[int], size: tuple[int, int]) -> list[np.ndarray]:
    """Bare PyAV: decode from the start, convert only the wanted frames, stop after the last."""
    height, width = size
    targets, last, out = set(wanted), wanted[-1], []
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            if index in targets:
                out.append(frame.reformat(width=width, height=height, format="rgb24",
                                          interpolation="BICUBIC").to_ndarray())
            if index >= last:
                break
    return out


def floor_seek(path: str, wanted: list[int], size: tuple[int, int]) -> list[np.ndarray]:
    """Bare PyAV: seek to the keyframe before each wanted frame, decode on to it."""
    height, width = size
    out = []
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start, rate, base = stream.start_time or 0, stream.average_rate, stream.time_base
        for index in wanted:
            pts = start + round(index / rate / base)
            container.seek(pts, stream=stream, backward=True, any_frame=False)
            frame = next(f for f in container.decode(stream) if f.pts >= pts)
            out.append(frame.reformat(width=width, height=height, format="rgb24",
                                      interpolation="BICUBIC").to_ndarray())
    return out


def ffmpeg_cli(path: str, wanted: list[int], size: tuple[int, int]) -> None:
    """The ``ffmpeg`` command line selecting the wanted frames, raw RGB to a pipe."""
    pick = "+".join(f"eq(n\\,{i})" for i in wanted)
    scale = f"scale={size[1]}:{size[0]}:flags=bicubic"
    subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-vf", f"select='{pick}',{scale}",
                    "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                   check=True, stdout=subprocess.DEVNULL)


@cache
def scanned_before(path: str) -> bool:
    """Whether the PyAV decoder scanned the packets of ``path`` before decoding it, until it
    read each file once: B-frames it can skip, in a stream not scanned already to be probed."""
    with av.open(path) as container:
        stream, info = _probe(container, path)
        return can_skip(stream) and info.pts_list is None


def pyav_prescan(path: str, settings: FrameSettings):
    """The PyAV decoder as it was before it read each file once: where it did, a pass
    demuxing every packet (their pts sorted, to number the frames it skips), then the decode
    (``scanned_before`` is known before this is timed)."""
    if scanned_before(path):
        with av.open(path) as container:
            stream = container.streams.video[0]
            sorted(packet.pts for packet in container.demux(stream) if packet.size)
    return decode_video(path, settings)


def measure_video(path: str, settings: FrameSettings, decoders: dict, repeats: int) -> dict:
    """Best seconds of each decoder, of the floor and of the ffmpeg command on one video; the
    bytes read by the PyAV ways over the file's size."""
    reference = decode_video(path, settings)
    scanned_before(path)
    wanted, size = sorted(set(reference.frame_indices)), reference.frames.shape[1:3]
    runs = {name: (decoder, path, settings) for name, decoder in decoders.items()}
    runs["floor_sequential"] = (floor_sequential, path, wanted, size)
    runs["floor_seek"] = (floor_seek, path, wanted, size)
    if shutil.which("ffmpeg"):
        runs["ffmpeg_cli"] = (ffmpeg_cli, path, wanted, size)
    row, cpu = best_times(repeats, runs)
    row["cpu_s"] = cpu
    row["floor"] = min(row["floor_sequential"], row["floor_seek"])
    row["pyav_method"], row["frames"] = reference.method, len(wanted)
    file_size = os.path.getsize(path)
    row["megabytes"] = file_size / 1e6
    row["read_over_size"] = {name: bytes_read(partial(*runs[name])) / file_size
                             for name in READ_WAYS}
    row["read_over_size"]["one_pass"] = read_once(path) / file_size
    return row


def preprocessing(videos: list[str], settings: FrameSettings, repeats: int) -> dict:
    """Seconds per video for each decoder, the floor and (if installed) the ffmpeg command,
    and each one's total over the videos divided by the floor's."""
    decoders = {}
    for name, (_, extra) in DECODERS.items():
        try:
            decoders[name] = resolve_decoder(name)
        except ModuleNotFoundError:
            print(f"  {name}: not installed (pip install 'dj-ops[{extra}]'), skipped")
    decoders["pyav_all_frames"] = partial(decode_video, skip_unreferenced=False)
    decoders["pyav_prescan"] = pyav_prescan
    rows = {}
    for path in videos:
        rows[Path(path).name] = row = measure_video(path, settings, decoders, repeats)
        print(f"  {Path(path).name}: " + ", ".join(
            f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float)))
    totals = {k: sum(r[k] for r in rows.values()) for k in (*decoders, "floor", "ffmpeg_cli")
              if all(k in r for r in rows.values())}
    ratios = {k: totals[k] / totals["floor"] for k in totals if k != "floor"}
    cpu = {k: sum(r["cpu_s"][k] for r in rows.values()) for k in decoders}
    return {"per_video_s": rows, "total_s": totals, "ratio_to_floor": ratios,
            "read_once_over_prescan": totals["pyav"] / totals["pyav_prescan"],
            "cpu_total_s": cpu,
            "cpu_read_once_over_prescan": cpu["pyav"] / cpu["pyav_prescan"],
            "cpu_skipping_over_all_frames": cpu["pyav"] / cpu["pyav_all_frames"]}


def children_cpu_seconds() -> float:
    """CPU seconds used so far by this process's live children (the decoding workers)."""
    total = 0.0
    for child in psutil.Process().children():
        try:
            times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def available_share(cores: int, seconds: float = 2.0) -> float:
    """Share of all cores that ``cores`` busy-looping processes get now: what other users'
    load leaves, the ceiling for the pool's core utilisation."""
    code = (f"import time\nend = time.perf_counter() + {seconds}\n"
            "while time.perf_counter() < end: pass")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    for process in [subprocess.Popen([sys.executable, "-c", code]) for _ in range(cores)]:
        process.wait()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return used / (wall * cores)


def pool_throughput(paths: list[str], workers: int, settings: FrameSettings) -> dict:
    """Videos per second through a warm :class:`DecodePool` of ``workers`` processes, and the
    share of all cores its workers kept busy."""
    pool = DecodePool(decode_video, workers, timeout_s=None)
    try:
        for ticket in [pool.submit(paths[0], settings) for _ in range(workers)]:
            pool.result(ticket)  # warm: every worker started
        cpu, start = children_cpu_seconds(), time.perf_counter()
        for ticket in [pool.submit(path, settings) for path in paths]:
            pool.result(ticket)
        wall = time.perf_counter() - start
        busy = (children_cpu_seconds() - cpu) / (wall * available_cores())
        return {"videos_per_s": len(paths) / wall, "core_utilisation": busy}
    finally:
        pool.close()


def requests_of(videos: list[str], count: int, folder: Path) -> list[str]:
    """``count`` distinct paths (links) cycling over ``videos``: the op decodes each."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        link = folder / f"r{i:04d}_{Path(videos[i % len(videos)]).name}"
        if not link.exists():
            link.symlink_to(os.path.abspath(videos[i % len(videos)]))
        paths.append(str(link))
    return paths


def run_pool(report: dict, paths: list[str]) -> None:
    cores = report["cores"]
    ceiling = available_share(cores)
    one = pool_throughput(paths, 1, FrameSettings())
    every = pool_throughput(paths, cores, FrameSettings())
    report["pool"] = {"1_worker": one, f"{cores}_workers": every, "busy_loop_share": ceiling,
                      "speedup": every["videos_per_s"] / one["videos_per_s"], "ideal": cores}
    print(f"decoding pool: 1 worker {one['videos_per_s']:.2f} videos/s, cores "
          f"{one['core_utilisation']:.0%} busy; {cores} workers {every['videos_per_s']:.2f} "
          f"videos/s, cores {every['core_utilisation']:.0%} busy (busy loops get {ceiling:.0%})")


def run_prefetch(report: dict, paths: list[str], batch: int, work: Path) -> None:
    from bench.bench_prefetch import prefetch_speedup  # loads torch: only now

    share = available_share(report["cores"])
    report["prefetch"] = prefetch_speedup(paths, batch, work / "model")
    report["prefetch"]["busy_loop_share_before"] = share
    report["prefetch"]["busy_loop_share_after"] = available_share(report["cores"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--parts", nargs="+", default=PARTS, choices=PARTS,
                        help="measure only these parts, keeping the others' saved results")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dj_ops_bench_"))
    videos = [str(p) for p in sample_video_paths(SHARED, work / "generated")]
    videos += [str(make_clip(work / name, s, fps, w, h, gop)) for name, s, fps, w, h, gop
               in GENERATED]
    videos.append(str(make_noisy_clip(work / NOISY)))
    videos.append(str(remux(videos[-1], work / NOISY_MKV)))
    saved = RESULTS / "decode.json"
    report = json.loads(saved.read_text()) if set(args.parts) != set(PARTS) else {}
    report.update(cores=available_cores(), load_average_start=os.getloadavg(), videos=videos)
    if "preprocessing" in args.parts:
        for title, settings in SCENARIOS.items():
            print(f"preprocessing per video, {title} (best of {args.repeats}, seconds):")
            report.setdefault("preprocessing", {})[title] = preprocessing(videos, settings,
                                                                          args.repeats)
    paths = requests_of(videos, args.requests, work / "requests")
    if "pool" in args.parts:
        run_pool(report, paths)
    if "prefetch" in args.parts:
        run_prefetch(report, paths, args.batch, work)
    report["load_average_end"] = os.getloadavg()
    write_results(report)


def write_results(report: dict) -> None:
    """``decode.json`` (everything) and ``decode.md`` (the ratios)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "decode.json").write_text(json.dumps(report, indent=2, default=float))
    lines = ["# Decoding benchmark", "",
             f"{report['cores']} cores; load average {report['load_average_start'][0]:.1f} at "
             f"start, {report['load_average_end'][0]:.1f} at end (shared machine: noisy).", "",
             "| preprocessing per video, total over the clips | " + " | ".join(
                 next(iter(report["preprocessing"].values()))["ratio_to_floor"]) + " |",
             "|---|" + "---|" * len(next(iter(report["preprocessing"].values()))
                                    ["ratio_to_floor"])]
    for title, result in report["preprocessing"].items():
        lines.append(f"| {title}: time / floor | " + " | ".join(
            f"{v:.2f}x" for v in result["ratio_to_floor"].values()) + " |")
    lines += ["", "| clip | " + " | ".join(f"PyAV / floor, {t}" for t in report["preprocessing"])
              + " |", "|---|" + "---|" * len(report["preprocessing"])]
    for clip in next(iter(report["preprocessing"].values()))["per_video_s"]:
        cells = [f"{r['per_video_s'][clip]['pyav'] / r['per_video_s'][clip]['floor']:.2f}x "
                 f"({r['per_video_s'][clip]['pyav_method']})"
                 for r in report["preprocessing"].values()]
        lines.append(f"| {clip} | " + " | ".join(cells) + " |")
    pool, prefetch = report["pool"], report["prefetch"]
    every = pool[f"{report['cores']}_workers"]
    lines += ["", f"Decoding pool, {report['cores']} workers vs 1: x{pool['speedup']:.2f} "
                  f"videos/s; cores busy {pool['1_worker']['core_utilisation']:.0%} with 1 "
                  f"worker (FFmpeg frame threads), {every['core_utilisation']:.0%} with "
                  f"{report['cores']}, where {report['cores']} busy-looping processes get "
                  f"{pool['busy_loop_share']:.0%} (the rest goes to other users).",
              f"Op throughput, prefetch on (2 micro-batches ahead, the default) vs off: "
              f"x{prefetch['speedup']:.2f}; 1 ahead vs off: x{prefetch['speedup_prefetch_1']:.2f} "
              f"({prefetch['note']}; busy-looping processes got "
              f"{prefetch['busy_loop_share_before']:.0%} of the cores before, "
              f"{prefetch['busy_loop_share_after']:.0%} after).", "", reads_section(report)]
    (RESULTS / "decode.md").write_text("\n".join(lines))
    print("\n".join(lines))


def reads_section(report: dict) -> str:
    """Markdown: the bytes each PyAV way reads over the file's size, per clip, and the time of
    the decoder reading once over that of the decoder with its packet pre-scan (also a section
    of docs/performance.md, written by bench/report.py)."""
    title, result = next(iter(report["preprocessing"].items()))
    if "read_over_size" not in next(iter(result["per_video_s"].values())):
        return ""  # results of a run before bytes were counted
    ways = [*READ_WAYS, "one_pass"]
    lines = ["## Reading each video once", "",
             f"`python -m bench.bench_decode` ({report['cores']} cores, load average "
             f"{report['load_average_start'][0]:.1f} at start, "
             f"{report['load_average_end'][0]:.1f} at end), {title}: bytes read (the process's "
             "I/O counter, `rchar`) over the file's size. `pyav` is the decoder reading each file "
             "once; `pyav_prescan` adds the pass that demuxed every packet of a file with "
             "B-frames first, as the decoder did before; `pyav_all_frames` skips no frame; "
             "`floor_sequential` is bare PyAV decoding up to the last wanted frame; `one_pass` "
             "one demuxing pass over the file.", "",
             "| clip | MB | " + " | ".join(ways) + " | pyav / pyav_prescan: wall, CPU |",
             "|---|---|" + "---|" * (len(ways) + 1)]
    for clip, row in result["per_video_s"].items():
        reads, size, cpu = row["read_over_size"], row["megabytes"], row["cpu_s"]
        lines.append(f"| {clip} | {size:.1f} | " + " | ".join(f"{reads[w]:.2f}x" for w in ways)
                     + f" | {row['pyav'] / row['pyav_prescan']:.2f}x, "
                     f"{cpu['pyav'] / cpu['pyav_prescan']:.2f}x |")
    lines += ["", "Totals over the clips, `pyav` over `pyav_prescan` (wall, CPU) and over "
              "`pyav_all_frames` (CPU): " + ", ".join(
        f"{t}: {r['read_once_over_prescan']:.2f}x, {r['cpu_read_once_over_prescan']:.2f}x; "
        f"{r['cpu_skipping_over_all_frames']:.2f}x" for t, r in report["preprocessing"].items())
        + "; wall time over the floor: " + ", ".join(
        f"{t}: {r['ratio_to_floor']['pyav']:.2f}x (pyav_prescan "
        f"{r['ratio_to_floor']['pyav_prescan']:.2f}x, pyav_all_frames "
        f"{r['ratio_to_floor']['pyav_all_frames']:.2f}x)"
        for t, r in report["preprocessing"].items()) + ".", "",
        "What this says: `pyav` reads what one demuxing pass over the file reads (`one_pass`; "
        "FFmpeg's own overhead, a few tens of kB, weighs on the 0.1 MB clips); the pre-scan "
        "read every file with B-frames twice. A Matroska file, with no frame count, is still "
        "scanned first: read twice either way. The pre-scan only demuxed, so its CPU time was "
        "small: read once or not, the decoder takes about the same CPU time, and skipping "
        "unreferenced frames keeps its saving over `pyav_all_frames`. Wall times are the "
        "loaded machine's.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
