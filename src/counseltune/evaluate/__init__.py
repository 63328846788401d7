"""Evaluation: language-aware text metrics (BLEU, ROUGE, distinct-n, length) and the statistics for comparing models."""
