"""MITI 4.2.1 scoring: the codes, counts, summary scores, global scores and profiles."""
