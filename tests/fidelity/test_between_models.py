"""Fine-tuned models compared with each other on the coder's per-item behavior indicators of shared items."""

from __future__ import annotations

import polars as pl

from counseltune.paired_indicators import between_models


def coded(behaviors: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"dialog_id": ["annomi:1"] * len(behaviors), "turn_index": list(range(1, len(behaviors) + 1)),
                         "mi_behavior": behaviors, "mi_code": [None] * len(behaviors),
                         "variant": ["finetuned"] * len(behaviors)})


def test_pairs_of_models_are_tested_on_shared_items_with_holm_across_all():
    asks, reflects = coded(["question"] * 8), coded(["reflection"] * 8)
    results = between_models({"a": asks, "b": reflects, "c": asks}, n_samples=200, seed=0)
    assert {key[:2] for key in results} == {("a", "b"), ("a", "c"), ("b", "c")}
    diff = results[("a", "b", "is_question")]
    assert diff["difference"] == 1.0 and diff["n"] == 8 and diff["p_value"] < 0.05
    assert diff["p_holm"] >= diff["p_value"] and "sign-flip" in diff["test"]
    assert results[("a", "c", "is_question")]["difference"] == 0.0


def test_models_without_shared_items_are_not_compared():
    other = coded(["question"]).with_columns(dialog_id=pl.lit("annomi:2"))
    assert between_models({"a": coded(["question"]), "b": other}, n_samples=50, seed=0) == {}
    assert between_models({"a": coded(["question"])}, n_samples=50, seed=0) == {}
