"""Cluster (dialog-level) bootstrap and paired test, on cases whose answer can be checked by hand."""

from __future__ import annotations

import numpy as np
import pytest
import sacrebleu

from counseltune.stats import (
    bootstrap_ci,
    bootstrap_corpus_ci,
    cluster_bootstrap_ci,
    cluster_resampled_sums,
    paired_test,
    too_few_clusters,
)
from counseltune.evaluate.text_metrics import CorpusBleu

# two dialogs of 50 turns each: every turn of A scores 0, every turn of B scores 1
VALUES = np.array([0.0] * 50 + [1.0] * 50)
DIALOGS = ["A"] * 50 + ["B"] * 50


def test_two_dialogs_with_many_turns_give_the_interval_of_two_clusters_not_of_100_turns():
    # resampling 2 dialogs: {A, A} -> 0 (p 1/4), {A, B} -> 0.5 (p 1/2), {B, B} -> 1 (p 1/4): the 95% interval is [0, 1]
    estimate, low, high = cluster_bootstrap_ci(VALUES, DIALOGS, 2000, seed=3)
    assert (estimate, low, high) == (0.5, 0.0, 1.0)
    # resampling the 100 turns as if independent: about 0.5 +- 1.96 * 0.05
    _, item_low, item_high = bootstrap_ci(VALUES, 2000, seed=3)
    assert 0.38 < item_low < 0.45 and 0.55 < item_high < 0.62


def test_cluster_resamples_take_whole_dialogs_weighted_by_their_turns():
    # dialog A: 3 turns of 1, dialog B: 1 turn of 0 -> resampled means are 1 (AA), 3/4 (AB), 0 (BB)
    sums = cluster_resampled_sums(np.column_stack([[1, 1, 1, 0], [1, 1, 1, 1]]), ["A", "A", "A", "B"], 500, seed=1)
    means = set(np.round(sums[:, 0] / sums[:, 1], 6))
    assert means == {1.0, 0.75, 0.0}
    assert set(sums[:, 1]) == {2.0, 4.0, 6.0}  # turns drawn: BB, AB, AA


def test_corpus_bleu_cluster_interval_is_spanned_by_the_three_possible_resamples():
    # resamples of 2 dialogs: {a, a}, {a, b} or {b, b}, each scored by sacrebleu on those turns
    a_hyps, a_refs = ["the cat sat on the mat today"] * 3, ["the cat sat on the mat"] * 3
    b_hyps, b_refs = ["a dog ran in the park"] * 2, ["the dog runs in a big park"] * 2
    hyps, refs, dialogs = a_hyps + b_hyps, a_refs + b_refs, ["a"] * 3 + ["b"] * 2
    estimate, low, high = bootstrap_corpus_ci(hyps, refs, CorpusBleu("en"), 1000, seed=5, clusters=dialogs)
    possible = [sacrebleu.corpus_bleu(h, [r], tokenize="13a").score
                for h, r in ((a_hyps * 2, a_refs * 2), (hyps, refs), (b_hyps * 2, b_refs * 2))]
    assert estimate == pytest.approx(possible[1])
    assert (low, high) == pytest.approx((min(possible), max(possible)))


def test_paired_test_over_dialogs_flips_per_dialog_mean_differences():
    # 3 dialogs x 20 turns, fine-tuned better in every turn: over turns p would be tiny, over 3 dialogs the exact
    # sign-flip p is 2/8 (only all-positive and all-negative flips are as extreme)
    dialogs = [d for d in "xyz" for _ in range(20)]
    a = np.array([{"x": 1.0, "y": 2.0, "z": 3.0}[d] for d in dialogs])
    b = np.zeros_like(a)
    over_dialogs = paired_test(a, b, 1000, seed=2, clusters=dialogs)
    assert over_dialogs["p_value"] == pytest.approx(2 / 8) and over_dialogs["n_units"] == 3
    assert over_dialogs["unit"] == "dialog" and "3 per-dialog mean differences" in over_dialogs["test"]
    assert over_dialogs["mean_diff"] == pytest.approx(2.0) and over_dialogs["cohens_d"] == pytest.approx(2.0)
    assert paired_test(a, b, 1000, seed=2)["p_value"] < 0.01


def test_too_few_dialogs_gives_the_reason_instead_of_an_interval():
    assert too_few_clusters(1, 5, "dialog", "interval") == "n=1 dialog < 5: no interval"
    assert too_few_clusters(3, 5, "dialog", "test") == "n=3 dialogs < 5: no test"
    assert too_few_clusters(5, 5, "dialog", "test") is None
