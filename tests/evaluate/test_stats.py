"""Statistics: seeded bootstrap CIs, corpus-metric bootstraps, the paired test and Holm's adjustment."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import sacrebleu

from counseltune.stats import (
    bootstrap_ci,
    bootstrap_corpus_ci,
    holm_bonferroni,
    paired_test,
)
from counseltune.evaluate.text_metrics import CorpusBleu, Distinct, distinct_n
from counseltune.evaluate.tokenize import char_tokens

HYPS = [
    "你最近睡得怎么样？", "我很难过。", "我们可以一起想想办法。", "听起来你这段时间压力很大。", "好的，我明白了。",
    "你愿意多说一点吗？", "这种感觉一定很不好受。", "我们慢慢来，不着急。", "你已经做得很好了。", "谢谢你告诉我这些。",
    "你觉得是什么让你这么焦虑？", "我们可以一起想想办法。",
]
REFS = [
    "你最近睡眠怎么样？", "我很伤心。", "我们一起想办法吧。", "听起来你最近压力真的很大。", "好的，我理解。",
    "可以再多说一些吗？", "这种感觉一定很难受。", "慢慢来，我们不着急。", "你做得已经很好了。", "谢谢你愿意告诉我。",
    "是什么让你感到焦虑呢？", "我们一起看看能做些什么。",
]


def test_bootstrap_ci_is_deterministic_for_a_seed():
    values = np.random.default_rng(0).normal(size=40)
    assert bootstrap_ci(values, 500, seed=3) == bootstrap_ci(values, 500, seed=3)
    assert bootstrap_ci(values, 500, seed=3) != bootstrap_ci(values, 500, seed=4)


def test_bootstrap_ci_contains_the_estimate_and_narrows_with_more_data():
    rng = np.random.default_rng(1)
    small, large = rng.normal(1.0, 1.0, 30), rng.normal(1.0, 1.0, 3000)
    est_s, low_s, high_s = bootstrap_ci(small, 1000, seed=7)
    est_l, low_l, high_l = bootstrap_ci(large, 1000, seed=7)
    assert low_s <= est_s <= high_s and low_l <= est_l <= high_l
    assert est_s == pytest.approx(small.mean())
    assert high_l - low_l < (high_s - low_s) / 4


def test_bootstrap_ci_takes_another_statistic():
    values = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    estimate, low, high = bootstrap_ci(values, 200, seed=0, statistic=np.median)
    assert estimate == 3.0 and low <= 3.0 <= high


def test_bleu_bootstrap_statistics_equal_sacrebleu_on_the_full_set():
    metric = CorpusBleu("zh")
    expected = sacrebleu.corpus_bleu(HYPS, [REFS], tokenize="zh").score
    assert metric(HYPS, REFS) == pytest.approx(expected, abs=1e-9)
    estimate, low, high = bootstrap_corpus_ci(HYPS, REFS, metric, n_samples=200, seed=7)
    assert estimate == pytest.approx(expected, abs=1e-9)
    assert low <= estimate <= high


def test_bleu_bootstrap_from_statistics_equals_rerunning_sacrebleu_on_each_resample():
    def rerun(hyps, refs):
        return sacrebleu.corpus_bleu(hyps, [refs], tokenize="zh").score

    fast = bootstrap_corpus_ci(HYPS, REFS, CorpusBleu("zh"), n_samples=30, seed=11)
    slow = bootstrap_corpus_ci(HYPS, REFS, rerun, n_samples=30, seed=11)
    assert fast == pytest.approx(slow, abs=1e-9)


def test_distinct_bootstrap_is_exact_on_the_full_set_and_brackets_it():
    metric = Distinct(2, "zh")
    expected = distinct_n([char_tokens(h) for h in HYPS], 2)
    assert metric(HYPS) == pytest.approx(expected)
    estimate, low, high = bootstrap_corpus_ci(HYPS, REFS, metric, n_samples=500, seed=7)
    assert estimate == pytest.approx(expected)
    assert low <= estimate <= high


def test_paired_test_of_identical_systems_gives_p_one_and_no_effect():
    scores = np.random.default_rng(2).uniform(size=25)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = paired_test(scores, scores.copy(), n_samples=1000, seed=7)
    assert result["p_value"] == 1.0 and result["p_wilcoxon"] == 1.0
    assert result["mean_diff"] == 0.0 and (result["ci_low"], result["ci_high"]) == (0.0, 0.0)
    assert result["cohens_d"] == 0.0 and result["rank_biserial"] == 0.0
    assert result["test"] == "paired sign-flip permutation test, 1000 resamples"


def test_paired_test_finds_a_clearly_better_system():
    rng = np.random.default_rng(3)
    base = rng.uniform(0.1, 0.4, 60)
    better = base + 0.05 + rng.normal(0, 0.03, 60)
    result = paired_test(better, base, n_samples=1000, seed=7)
    assert result["p_value"] < 0.01 and result["p_wilcoxon"] < 0.01
    assert 0 < result["ci_low"] < result["mean_diff"] < result["ci_high"]
    assert result["cohens_d"] > 1 and result["rank_biserial"] > 0.8
    assert result["n_a_better"] + result["n_b_better"] + result["n_ties"] == 60


def test_paired_test_is_exact_for_few_items():
    # 3 items, all in favour of a: 2 of the 8 sign flips are as extreme (all + and all -)
    result = paired_test([1.0, 2.0, 3.5], [0.5, 1.0, 2.0], n_samples=1000, seed=0)
    assert result["p_value"] == pytest.approx(0.25)
    assert result["test"] == "paired sign-flip permutation test, exact (8 flips)"


def test_wilcoxon_p_is_exact_for_few_untied_differences():
    # 10 untied positive differences: P(W+ = 55) = 1/1024, two-sided 2/1024 (scipy's exact value too)
    a = np.arange(1, 11) * 0.1 + 1.0
    result = paired_test(a, np.ones(10), n_samples=100, seed=0)
    assert result["p_wilcoxon"] == pytest.approx(2 / 1024)


def test_effect_sizes_on_a_hand_example():
    # differences 1, 2, -0.5: |d| ranks 2, 3, 1 -> W+ = 5, W- = 1; mean 5/6, sd sqrt(19/12)
    result = paired_test([2.0, 3.0, 0.5], [1.0, 1.0, 1.0], n_samples=100, seed=0)
    assert result["rank_biserial"] == pytest.approx(4 / 6)
    assert result["cohens_d"] == pytest.approx((5 / 6) / np.sqrt(19 / 12))


def test_paired_test_with_a_constant_nonzero_difference_has_no_cohens_d():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = paired_test([1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], n_samples=100, seed=0)
    assert result["cohens_d"] is None and result["rank_biserial"] == 1.0


def test_holm_bonferroni_on_a_hand_example():
    # sorted 0.01, 0.03, 0.04, 0.5 times 4, 3, 2, 1 -> 0.04, 0.09, 0.08 -> 0.09 (kept monotone), 0.5
    adjusted = holm_bonferroni({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.5})
    assert adjusted == pytest.approx({"a": 0.04, "b": 0.09, "c": 0.09, "d": 0.5})
    assert list(adjusted) == ["a", "b", "c", "d"]
    assert holm_bonferroni({"x": 0.6, "y": 0.7}) == {"x": 1.0, "y": 1.0}
    assert holm_bonferroni({}) == {}
