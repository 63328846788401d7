"""Uncertainty and model comparison: percentile bootstrap CIs, a paired test with effect sizes, Holm's adjustment.

Shared: the evaluate stage (scores), the fidelity stage (MITI profiles, judged sessions) and report-compare use it.

Items that come in clusters (turns of one dialog) are not independent: the cluster bootstrap resamples whole
clusters, and the paired test with clusters flips the sign of each cluster's mean difference. With fewer clusters
than a minimum, too_few_clusters gives the reason to print instead of an interval or a test.

Everything is seeded (numpy default_rng) and vectorized. scipy is optional: the Wilcoxon p-value uses
scipy.stats.wilcoxon when scipy is installed, and otherwise is computed here the way scipy's 'auto' method
does: exact for up to 50 untied non-zero differences, else a tie-corrected normal approximation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

# resamples x items held in memory at once by the vectorized bootstraps
_CHUNK_CELLS = 4_000_000
# like scipy.stats.wilcoxon(method='auto'): exact null distribution up to this many untied non-zero differences
_WILCOXON_EXACT_MAX_N = 50


class ResampledMetric(Protocol):
    """A corpus metric that a bootstrap recomputes from per-pair state instead of from the texts."""

    def __call__(self, hypotheses: Sequence[str], references: Sequence[str]) -> float: ...

    def prepare(self, hypotheses: Sequence[str], references: Sequence[str]) -> Any: ...

    def resampled(self, state: Any, weights: np.ndarray) -> np.ndarray: ...


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    n_samples: int,
    seed: int,
    confidence: float = 0.95,
    statistic: Callable[..., np.ndarray] = np.mean,
) -> tuple[float, float, float]:
    """Per-item values -> (statistic on all values, percentile-bootstrap low, high); statistic(x, axis=1)."""
    x = np.asarray(values, dtype=float)
    _check_sample(len(x), n_samples, confidence)
    rng = np.random.default_rng(seed)
    boot = np.concatenate([statistic(x[idx], axis=1) for idx in _resample_indices(rng, len(x), n_samples)])
    low, high = _percentiles(boot, confidence)
    return float(statistic(x)), low, high


def cluster_bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    clusters: Sequence[object] | np.ndarray,
    n_samples: int,
    seed: int,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """Per-item values and each item's cluster -> (mean over items, percentile-bootstrap low, high) resampling clusters.

    A resample draws as many clusters as there are, with replacement, and takes the mean over all their items
    (a ratio of sums, so clusters of different sizes weigh by their items, as the estimate does).
    """
    x = np.asarray(values, dtype=float)
    _check_sample(len(x), n_samples, confidence)
    boot = np.concatenate([(w @ x) / w.sum(axis=1) for w in cluster_weights(clusters, n_samples, seed)])
    low, high = _percentiles(boot, confidence)
    return float(x.mean()), low, high


def cluster_resampled_sums(
    columns: np.ndarray, clusters: Sequence[object] | np.ndarray, n_samples: int, seed: int
) -> np.ndarray:
    """Per-item columns (n, m) and each item's cluster -> column sums over each cluster-bootstrap resample (B, m).

    With one row per cluster (clusters = range(n)) this is the plain bootstrap of per-cluster totals, drawn as
    rng.integers(0, n, size=(B, n)) from default_rng(seed) (B x n within one chunk).
    """
    cols = np.asarray(columns, dtype=float).reshape(len(columns), -1)
    return np.concatenate([w @ cols for w in cluster_weights(clusters, n_samples, seed)])


def cluster_weights(clusters: Sequence[object] | np.ndarray, n_samples: int, seed: int):
    """Each item's cluster -> yield (rows, n_items) arrays: how often each item's cluster was drawn, n_samples rows."""
    codes, n_clusters = cluster_codes(clusters)
    if n_clusters == 0:
        raise ValueError("the bootstrap needs at least one value")
    rng = np.random.default_rng(seed)
    for rows in _chunk_rows(max(len(codes), n_clusters), n_samples):
        idx = rng.integers(0, n_clusters, size=(rows, n_clusters))
        yield _counts(idx, n_clusters)[:, codes]


def cluster_codes(clusters: Sequence[object] | np.ndarray) -> tuple[np.ndarray, int]:
    """Cluster labels, one per item -> (an integer code per item, number of clusters), codes in first-seen order."""
    seen: dict[object, int] = {}
    codes = np.fromiter((seen.setdefault(c, len(seen)) for c in clusters), dtype=np.int64)
    return codes, len(seen)


def cluster_means(values: np.ndarray, clusters: Sequence[object] | np.ndarray) -> np.ndarray:
    """Per-item values -> the mean of each cluster (first-seen order)."""
    codes, n_clusters = cluster_codes(clusters)
    x = np.asarray(values, dtype=float)
    return np.bincount(codes, weights=x, minlength=n_clusters) / np.bincount(codes, minlength=n_clusters)


def too_few_clusters(n_clusters: int, minimum: int, unit: str, what: str) -> str | None:
    """Cluster count and the minimum -> the reason an interval or test is not reported ('n=1 dialog < 5: no
    interval'), or None when there are enough."""
    if n_clusters >= minimum:
        return None
    return f"n={n_clusters} {unit}{'' if n_clusters == 1 else 's'} < {minimum}: no {what}"


def bootstrap_corpus_ci(
    hypotheses: Sequence[str],
    references: Sequence[str],
    metric_fn: ResampledMetric | Callable[[list[str], list[str]], float],
    n_samples: int,
    seed: int,
    confidence: float = 0.95,
    clusters: Sequence[object] | np.ndarray | None = None,
) -> tuple[float, float, float]:
    """Pairs and a corpus metric -> (metric on all pairs, percentile-bootstrap low, high) resampling pairs, or
    whole clusters of pairs when each pair's cluster (its dialog) is given.

    A metric with prepare/resampled (text_metrics.CorpusBleu, Distinct) is recomputed from per-pair
    statistics; a plain callable metric_fn(hyps, refs) is rerun on each resample (same resamples for a seed).
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    n = len(hypotheses)
    _check_sample(n, n_samples, confidence)
    if clusters is not None and len(clusters) != n:
        raise ValueError(f"{n} pairs but {len(clusters)} cluster labels")
    if clusters is None:
        rng = np.random.default_rng(seed)
        weights = (_counts(idx, n) for idx in _resample_indices(rng, n, n_samples))
    else:
        weights = cluster_weights(clusters, n_samples, seed)
    if hasattr(metric_fn, "prepare") and hasattr(metric_fn, "resampled"):
        state = metric_fn.prepare(hypotheses, references)
        estimate = float(metric_fn.resampled(state, np.ones((1, n)))[0])
        boot = np.concatenate([metric_fn.resampled(state, w) for w in weights])
    else:
        hyps, refs = list(hypotheses), list(references)
        estimate = float(metric_fn(hyps, refs))
        rows = (np.repeat(np.arange(n), row.astype(np.int64)) for w in weights for row in w)
        boot = np.array([metric_fn([hyps[i] for i in row], [refs[i] for i in row]) for row in rows])
    low, high = _percentiles(boot, confidence)
    return estimate, low, high


def paired_test(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    n_samples: int,
    seed: int,
    confidence: float = 0.95,
    clusters: Sequence[object] | np.ndarray | None = None,
) -> dict:
    """Per-item scores of two systems on the same items -> mean difference a-b, its CI, p-values, effect sizes.

    With each item's cluster (its dialog), the CI resamples clusters and the tests and effect sizes are computed
    on the per-cluster mean differences (the independent units); mean_diff stays the mean over items.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired scores need two 1-d arrays of equal length, got {x.shape} and {y.shape}")
    d = x - y
    _check_sample(len(d), n_samples, confidence)
    if clusters is None:
        diff, low, high = bootstrap_ci(d, n_samples, seed, confidence)
        units, unit, ci_method = d, "item", f"percentile bootstrap over items, {n_samples} resamples"
    else:
        if len(clusters) != len(d):
            raise ValueError(f"{len(d)} paired scores but {len(clusters)} cluster labels")
        diff, low, high = cluster_bootstrap_ci(d, clusters, n_samples, seed, confidence)
        units, unit = cluster_means(d, clusters), "dialog"
        ci_method = f"percentile cluster bootstrap over dialogs, {n_samples} resamples"
    p_perm, test = _sign_flip_p(units, n_samples, seed)
    if clusters is not None:
        test += f" over {len(units)} per-dialog mean differences"
    p_wilcoxon, wilcoxon_method = _wilcoxon_p(units)
    return {
        "n": len(d),
        "n_units": len(units),
        "unit": unit,
        "mean_a": float(x.mean()),
        "mean_b": float(y.mean()),
        "mean_diff": diff,
        "ci_low": low,
        "ci_high": high,
        "confidence": confidence,
        "ci_method": ci_method,
        "p_value": p_perm,
        "test": test,
        "p_wilcoxon": p_wilcoxon,
        "wilcoxon_method": wilcoxon_method,
        "cohens_d": _cohens_dz(units),
        "rank_biserial": _rank_biserial(units),
        "n_a_better": int((units > 0).sum()),
        "n_b_better": int((units < 0).sum()),
        "n_ties": int((units == 0).sum()),
    }


def holm_bonferroni(pvalues: dict[str, float]) -> dict[str, float]:
    """Named p-values -> Holm-Bonferroni adjusted p-values (same names; monotone, capped at 1)."""
    names = sorted(pvalues, key=lambda k: pvalues[k])
    m = len(names)
    adjusted, running = {}, 0.0
    for rank, name in enumerate(names):
        running = max(running, min(1.0, (m - rank) * float(pvalues[name])))
        adjusted[name] = running
    return {name: adjusted[name] for name in pvalues}


def _sign_flip_p(d: np.ndarray, n_samples: int, seed: int) -> tuple[float, str]:
    """Two-sided p of |mean d| under random sign flips; exact over all 2^n flips when that is no more work."""
    n = len(d)
    observed = abs(d.mean())
    # a flip that reproduces the observed mean up to rounding must count as at least as extreme
    tol = 1e-12 * max(1.0, float(np.abs(d).max(initial=0.0)))
    if n <= 20 and 2**n <= n_samples:
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
        means = np.abs(signs @ d) / n
        return float((means >= observed - tol).mean()), f"paired sign-flip permutation test, exact ({2**n} flips)"
    rng = np.random.default_rng([seed, 1])
    hits = 0
    for rows in _chunk_rows(n, n_samples):
        signs = 1.0 - 2.0 * rng.integers(0, 2, size=(rows, n))
        hits += int((np.abs(signs @ d) / n >= observed - tol).sum())
    return (hits + 1) / (n_samples + 1), f"paired sign-flip permutation test, {n_samples} resamples"


def _wilcoxon_p(d: np.ndarray) -> tuple[float, str]:
    """Wilcoxon signed-rank two-sided p (zeros dropped); 1.0 when no difference is non-zero."""
    nonzero = d[d != 0]
    if len(nonzero) == 0:
        return 1.0, "Wilcoxon signed-rank: all differences are 0"
    try:
        from scipy.stats import wilcoxon
    except ImportError:
        ranks, ties = _average_ranks(np.abs(nonzero))
        w_plus = float(ranks[nonzero > 0].sum())
        if len(nonzero) <= _WILCOXON_EXACT_MAX_N and (ties == 1).all():
            return _wilcoxon_exact_p(w_plus, len(nonzero)), "Wilcoxon signed-rank, exact (numpy; scipy not installed)"
        method = "Wilcoxon signed-rank, normal approximation with tie correction (numpy; scipy not installed)"
        return _wilcoxon_normal_p(w_plus, len(nonzero), ties), method
    method = "Wilcoxon signed-rank (scipy.stats.wilcoxon, zero_method='wilcox')"
    return float(wilcoxon(d, zero_method="wilcox").pvalue), method


def _wilcoxon_exact_p(w_plus: float, n: int) -> float:
    """Two-sided exact p of the signed-rank sum W+ for n untied non-zero differences (as scipy's 'exact')."""
    # counts[k] = number of sign assignments of ranks 1..n whose positive ranks sum to k
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for r in range(1, n + 1):
        counts[r:] = counts[r:] + counts[:-r].copy()
    probs = counts / counts.sum()
    k = round(w_plus)
    return float(min(1.0, 2 * min(probs[: k + 1].sum(), probs[k:].sum())))


def _wilcoxon_normal_p(w_plus: float, n: int, tie_counts: np.ndarray) -> float:
    """Two-sided p of W+ from its normal approximation (tie-corrected variance, no continuity correction)."""
    mean = n * (n + 1) / 4
    var = n * (n + 1) * (2 * n + 1) / 24 - (tie_counts**3 - tie_counts).sum() / 48
    if var <= 0:
        return 1.0
    z = (w_plus - mean) / math.sqrt(var)
    return float(math.erfc(abs(z) / math.sqrt(2)))


def _rank_biserial(d: np.ndarray) -> float:
    """Matched-pairs rank-biserial correlation (W+ - W-) / (W+ + W-) over non-zero differences."""
    nonzero = d[d != 0]
    if len(nonzero) == 0:
        return 0.0
    ranks, _ = _average_ranks(np.abs(nonzero))
    return float((ranks[nonzero > 0].sum() - ranks[nonzero < 0].sum()) / ranks.sum())


def _cohens_dz(d: np.ndarray) -> float | None:
    """Cohen's d for paired samples, mean(d) / sd(d); 0 when every difference is 0, None when undefined."""
    if not d.any():
        return 0.0
    if len(d) < 2:
        return None
    sd = float(d.std(ddof=1))
    return float(d.mean() / sd) if sd > 0 else None


def _average_ranks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values -> 1-based ranks with ties averaged, and the size of each tie group."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2)[inverse], counts


def _resample_indices(rng: np.random.Generator, n: int, n_samples: int):
    """Yield (rows, n) arrays of bootstrap indices, n_samples rows in all, a bounded number of cells at a time."""
    for rows in _chunk_rows(n, n_samples):
        yield rng.integers(0, n, size=(rows, n))


def _chunk_rows(n: int, n_samples: int):
    """Split n_samples resamples of n items into chunks of a bounded number of cells."""
    step = max(1, _CHUNK_CELLS // max(n, 1))
    for start in range(0, n_samples, step):
        yield min(step, n_samples - start)


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    """Bootstrap indices (B, n) -> how often each item was drawn in each resample (B, n)."""
    flat = (np.arange(len(idx))[:, None] * n + idx).ravel()
    return np.bincount(flat, minlength=len(idx) * n).reshape(len(idx), n).astype(float)


def _percentiles(boot: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = 1 - confidence
    low, high = np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def _check_sample(n: int, n_samples: int, confidence: float) -> None:
    if n == 0:
        raise ValueError("the bootstrap needs at least one value")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
