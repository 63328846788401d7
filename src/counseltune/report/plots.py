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
