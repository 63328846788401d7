"""Small matplotlib helpers shared by the reports: files only (Agg), deterministic bytes."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on a cluster node
import matplotlib.pyplot as plt  # noqa: E402


def save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})  # no version stamp: same inputs, same bytes
    plt.close(fig)
    return path


def bars_with_ci(groups: list[str], series: dict[str, list[tuple[float, float, float]]], ylabel: str, path: Path,
                 title: str = "") -> Path:
    """Grouped bars: one group per entry of `groups`, one bar per series; values are (estimate, low, high)."""
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(groups) * max(1, len(series))), 3.6))
    width = 0.8 / max(1, len(series))
    for k, (name, values) in enumerate(series.items()):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(groups))]
        est = [v[0] for v in values]
        err = [[max(0.0, v[0] - v[1]) for v in values], [max(0.0, v[2] - v[0]) for v in values]]
        ax.bar(xs, est, width, yerr=err, capsize=3, label=name)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return save(fig, path)


def histograms(series: dict[str, list[float]], xlabel: str, path: Path, bins: int = 30) -> Path:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, values in series.items():
        if values:
            ax.hist(values, bins=bins, alpha=0.5, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.legend(fontsize=8)
    return save(fig, path)


def lines(series: dict[str, tuple[list[float], list[float]]], xlabel: str, ylabel: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="." if len(xs) < 50 else None, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if series:
        ax.legend(fontsize=8)
    return save(fig, path)


def miti_scatter(points: dict[str, tuple[float, float]], path: Path, title: str = "") -> Path:
    """Reflection-to-question ratio (x) against % complex reflections (y), one labelled point per entry, with
    MITI 4.2.1's fair/good thresholds as dashed/solid lines (R:Q 1:1, 2:1; %CR 40%, 50%)."""
    from counseltune.instruments.miti import THRESHOLDS

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for style, k in (("--", 0), ("-", 1)):
        ax.axvline(THRESHOLDS["reflection_to_question"][k], color="grey", linestyle=style, linewidth=0.8)
        ax.axhline(THRESHOLDS["percent_complex_reflection"][k], color="grey", linestyle=style, linewidth=0.8)
    for name, (rq, cr) in points.items():
        ax.scatter([rq], [cr], s=36)
        ax.annotate(name, (rq, cr), textcoords="offset points", xytext=(4, 4), fontsize=7)
    highest = max([2.5, *(rq * 1.15 for rq, _ in points.values())])
    ax.set_xlim(0, highest)
    ax.set_ylim(0, 1)
    ax.set_xlabel("reflection-to-question ratio (fair 1:1 dashed, good 2:1 solid)")
    ax.set_ylabel("% complex reflections (fair 40%, good 50%)")
    if title:
        ax.set_title(title)
    return save(fig, path)
