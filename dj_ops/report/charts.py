"""The report's charts: Vega-Lite specs built with altair, drawn to SVG by vl-convert.

Why these: altair writes Vega-Lite, the field's grammar of charts, and ``vl-convert-python``
runs Vega's own renderer in-process (no browser, no network), so each chart arrives in the page
as a finished SVG: nothing to load, no script to run, and the page opens offline. Numbers are
binned here (numpy) before they reach Vega, so a chart of a million videos embeds a few dozen
bars, not a million points.

Each chart is a :class:`Chart` holding its SVG, or a note saying why there is nothing to draw
(a run without timings, without windows, ...).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from dj_ops.report.stats import RunStats

WIDTH, HEIGHT = 360, 180
MAX_BINS = 40


@dataclass(frozen=True)
class Chart:
    """One chart of the report: its key, title, SVG (empty when there is nothing to draw) and
    a note (why not, or how to read it)."""

    key: str
    title: str
    svg: str = ""
    note: str = ""


def _render(spec) -> str:
    import vl_convert

    return vl_convert.vegalite_to_svg(spec.to_json())


def _bars(rows: list[dict], x: str, y: str, x_title: str, y_title: str):
    import altair as alt

    return alt.Chart(alt.Data(values=rows), width=WIDTH, height=HEIGHT).mark_bar().encode(
        x=alt.X(f"{x}:N", title=x_title, sort="-y"), y=alt.Y(f"{y}:Q", title=y_title),
        tooltip=[f"{x}:N", f"{y}:Q"])


def _histogram(values, title: str, unit: str, integer: bool = True):
    """Bars of a pre-binned histogram of ``values``."""
    import altair as alt

    data = np.asarray(values, dtype=np.float64)
    low, high = float(data.min()), float(data.max())
    if integer and high - low + 1 <= MAX_BINS:
        edges = np.arange(low - 0.5, high + 1.5)
    else:
        edges = np.histogram_bin_edges(data, bins=min(MAX_BINS, max(1, len(data) // 5)))
    counts, edges = np.histogram(data, bins=edges)
    rows = [{"start": float(a), "end": float(b), "videos": int(c)}
            for a, b, c in zip(edges[:-1], edges[1:], counts, strict=True)]
    return alt.Chart(alt.Data(values=rows), width=WIDTH, height=HEIGHT).mark_bar().encode(
        x=alt.X("start:Q", title=f"{title} ({unit})", bin="binned"), x2="end:Q",
        y=alt.Y("videos:Q", title="videos"), tooltip=["start:Q", "end:Q", "videos:Q"])


def throughput_chart(stats: RunStats) -> Chart:
    """Videos per second over the run, from the times their results came back."""
    import altair as alt

    key, title = "throughput", "Videos per second over the run"
    if len(stats.finished) < 2 or stats.span_s <= 0:
        return Chart(key, title, note="the records hold fewer than two finish times "
                                      "(records written before dj_ops recorded timing)")
    times = np.asarray(stats.finished) - min(stats.finished)
    bins = int(min(MAX_BINS, max(2, len(times) // 5)))
    counts, edges = np.histogram(times, bins=bins)
    width = edges[1] - edges[0]
    rows = [{"second": float(edge + width / 2), "videos_per_s": float(c / width)}
            for edge, c in zip(edges[:-1], counts, strict=True)]
    spec = alt.Chart(alt.Data(values=rows), width=WIDTH, height=HEIGHT).mark_line(
        point=True).encode(x=alt.X("second:Q", title="seconds since the first result"),
                           y=alt.Y("videos_per_s:Q", title="videos / s"),
                           tooltip=["second:Q", "videos_per_s:Q"])
    return Chart(key, title, _render(spec),
                 f"{len(times)} results over {stats.span_s:.1f} s, in bins of {width:.2f} s")


def time_split_chart(stats: RunStats) -> Chart:
    """Seconds spent decoding (in the decoding workers) and generating, summed over videos."""
    key, title = "time_split", "Time: decoding and generation"
    decode, generate = sum(stats.decode_s), sum(stats.generate_s)
    if not stats.decode_s and not stats.generate_s:
        return Chart(key, title, note="no video has timings (reused, or records written "
                                      "before dj_ops recorded timing)")
    rows = [{"stage": "decoding", "seconds": round(decode, 3)},
            {"stage": "generation", "seconds": round(generate, 3)}]
    return Chart(key, title, _render(_bars(rows, "stage", "seconds", "stage", "seconds")),
                 "decoding: the decoding workers' wall time per video, in parallel with "
                 "generation; generation: each video's share of its backend call")


def counter_chart(key: str, title: str, counts: Counter, what: str, empty: str) -> Chart:
    if not counts:
        return Chart(key, title, note=empty)
    rows = [{what: name, "videos": n} for name, n in counts.most_common(MAX_BINS)]
    return Chart(key, title, _render(_bars(rows, what, "videos", what, "videos")))


def histogram_chart(key: str, title: str, values, unit: str, empty: str) -> Chart:
    if not len(values):
        return Chart(key, title, note=empty)
    return Chart(key, title, _render(_histogram(values, title, unit)),
                 f"{len(values)} values, median {float(np.median(values)):g}")


def all_charts(stats: RunStats) -> list[Chart]:
    """Every chart of the report, in page order."""
    return [
        throughput_chart(stats),
        time_split_chart(stats),
        counter_chart("failures", "Failures by kind", stats.error_kinds, "error_kind",
                      "no video failed"),
        counter_chart("flags", "Quality flags", stats.flags, "flag",
                      "no caption was flagged"),
        histogram_chart("caption_words", "Caption length", stats.caption_words, "words",
                        "no caption"),
        histogram_chart("frames", "Frames per video", stats.frame_counts, "frames",
                        "no frame counts in the records"),
        histogram_chart("visual_tokens", "Visual tokens per video", stats.visual_tokens,
                        "tokens", "not counted: no frame budget was set (max_visual_tokens, or "
                                  "a vLLM/openai context)"),
        histogram_chart("windows", "Windows per video", stats.window_counts, "windows",
                        "no video was captioned in windows (window_seconds unset)"),
    ]
