"""Crisis safety: probes, the rule-based resource pre-check and the judge's safe-handling ratings."""
