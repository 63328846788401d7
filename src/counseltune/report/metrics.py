"""How metric values are named and printed in reports (one place for labels and CI/p-value formatting).

An interval or test that was not computed (too few dialogs) prints greyed, as its reason, never as a number.
"""

from __future__ import annotations

from typing import Any

from counseltune.report.document import Greyed

METRIC_LABELS = {
    "bleu4": "BLEU-4", "rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L",
    "distinct1": "Distinct-1", "distinct2": "Distinct-2", "length_chars": "length (chars)",
}


def ci_cell(ci: dict[str, Any] | None) -> str | Greyed:
    if not ci:
        return "-"
    if ci.get("low") is None or ci.get("high") is None:
        return Greyed(f"{ci['estimate']:.3f} ({ci.get('no_interval') or 'no interval'})")
    return f"{ci['estimate']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]"


def paired_cell(paired: dict[str, Any]) -> str | Greyed:
    if not paired:
        return "-"
    if paired.get("no_test"):
        return Greyed(f"{paired['no_test']} (difference {paired['difference']:+.3f})")
    p = paired.get("p_holm", paired.get("p_value"))
    stars = "" if p is None else (" *" if p < 0.05 else "")
    d = paired.get("cohens_d")  # None when every difference is equal (no spread): d is undefined
    p_text = "n/a" if p is None else f"{p:.3g}"
    d_text = "n/a" if d is None else f"{d:.2f}"
    return f"{paired['difference']:+.3f} (p={p_text}{stars}, d={d_text})"


def convention_note(evaluation: dict[str, Any]) -> str:
    """The metrics JSON -> what was computed, per language (BLEU tokenizer, ROUGE tokens and code), and how CIs were."""
    parts = [f"Metric convention: {evaluation['convention']}."]
    for lang, block in sorted(evaluation["languages"].items()):
        labels = block.get("labels", {})
        parts.append(f"{lang}: BLEU-4 = {labels.get('bleu_kind')}, tokenizer {labels.get('bleu_tokenizer')}; "
                     f"ROUGE = {labels.get('rouge_implementation')}, tokens {labels.get('rouge_tokenizer')}, "
                     f"{labels.get('rouge_scale')}.")
    parts.append(f"{evaluation.get('ci_method', '95% percentile bootstrap')}, {evaluation['bootstrap_samples']} "
                 "resamples; paired tests over per-dialog mean differences.")
    if "min_dialogs_for_inference" in evaluation:
        parts.append(f"With fewer than {evaluation['min_dialogs_for_inference']} dialogs in a language, no interval "
                     "and no test is reported (greyed, with the reason).")
    return " ".join(parts)
