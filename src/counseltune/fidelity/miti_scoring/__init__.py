"""MITI 4.2.1 scoring: behavior counts, summary scores, global scores and profiles (definitions: instruments/miti.py)."""
