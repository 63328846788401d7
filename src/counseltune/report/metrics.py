"""How metric values are named and printed in reports (one place for labels and CI/p-value formatting)."""

from __future__ import annotations

from typing import Any

METRIC_LABELS = {
    "bleu4": "BLEU-4", "rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L",
    "distinct1": "Distinct-1", "distinct2": "Distinct-2", "length_chars": "length (chars)",
}


def ci_cell(ci: dict[str, Any] | None) -> str:
    if not ci:
        return "-"
    return f"{ci['estimate']:.3f} [{ci.get('low', ci['estimate']):.3f}, {ci.get('high', ci['estimate']):.3f}]"


def paired_cell(paired: dict[str, Any]) -> str:
    if not paired:
        return "-"
    p = paired.get("p_holm", paired.get("p_value"))
    stars = "" if p is None else (" *" if p < 0.05 else "")
    d = paired.get("cohens_d")  # None when every difference is equal (no spread): d is undefined
    p_text = "n/a" if p is None else f"{p:.3g}"
    d_text = "n/a" if d is None else f"{d:.2f}"
    return f"{paired['difference']:+.3f} (p={p_text}{stars}, d={d_text})"


def convention_note(evaluation: dict[str, Any]) -> str:
    return (f"Metric convention: {evaluation['convention']}. ROUGE tokenizer for zh/ko: {evaluation['rouge_tokenizer']}. "
            f"95% percentile bootstrap CIs over {evaluation['bootstrap_samples']} resamples of items.")
