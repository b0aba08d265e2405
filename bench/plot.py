"""The benchmark figure: throughput of each mode per scenario, and the op's scaling."""

from __future__ import annotations

from pathlib import Path

from bench.measure import RESULTS_DIR

MODE_COLORS = {"op": "tab:green", "baseline": "tab:red", "decode_floor": "tab:gray"}


def _throughput_panel(ax, throughput: dict) -> None:
    scenarios = list(throughput["scenarios"])
    width = 0.25
    for offset, mode in enumerate(MODE_COLORS):
        values = [throughput["scenarios"][s]["modes"][mode]["videos_per_s"] for s in scenarios]
        xs = [i + (offset - 1) * width for i in range(len(scenarios))]
        ax.bar(xs, values, width, label=mode.replace("_", " "), color=MODE_COLORS[mode])
    for i, name in enumerate(scenarios):
        result = throughput["scenarios"][name]
        top = result["modes"]["op"]["videos_per_s"]
        ax.annotate(f"{result['speedup_vs_baseline']:.1f}x", (i - width, top),
                    ha="center", va="bottom", fontsize=9)
    ax.set_xticks(range(len(scenarios)), [s.replace(", ", "\n") for s in scenarios], fontsize=8)
    ax.set_ylabel("videos / s")
    ax.set_title("op vs sequential baseline (same process)")
    ax.legend(fontsize=8)


def _scaling_panel(ax, rows: list[dict], field: str, label: str, rate_key: str) -> None:
    xs = [row[field] for row in rows]
    ax.plot(xs, [row[rate_key] for row in rows], "o-", color="tab:green")
    ax.set_xlabel(label)
    ax.set_ylabel(rate_key.replace("_", " ").replace("per", "/"), color="tab:green")
    twin = ax.twinx()
    twin.plot(xs, [row["peak_rss_mib"] for row in rows], "s--", color="tab:blue")
    twin.set_ylabel("peak RSS (MiB)", color="tab:blue")
    ax.set_ylim(0, 1.15 * max(row[rate_key] for row in rows))
    twin.set_ylim(0, 1.15 * max(row["peak_rss_mib"] for row in rows))


def plot(throughput: dict | None, scaling: dict | None,
         out: Path = RESULTS_DIR / "performance.png") -> Path:
    """Draw the figure from saved results (panels for what exists) and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    if throughput:
        _throughput_panel(axes[0][0], throughput)
    if scaling:
        sweeps = scaling["sweeps"]
        _scaling_panel(axes[0][1], sweeps["generation_batch_size"], "generation_batch_size",
                       "generation_batch_size", "videos_per_cpu_s")
        _scaling_panel(axes[1][0], sweeps["videos"], "requests", "videos", "videos_per_cpu_s")
        _scaling_panel(axes[1][1], sweeps["torch_threads"], "threads", "torch intra-op threads",
                       "videos_per_s")
        axes[0][1].set_title("op: generation batch size (1 thread)")
        axes[1][0].set_title("op: number of videos (1 thread)")
        axes[1][1].set_title("op: threads (wall clock)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
