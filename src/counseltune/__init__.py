"""counseltune: a reproducible DAG for fine-tuning and evaluating MI/CBT counseling language models."""

__version__ = "0.1.0"
