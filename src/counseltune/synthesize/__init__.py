"""Synthetic MI and CBT sessions: behavior planning, generation, quality filters."""
