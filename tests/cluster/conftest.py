"""The cluster tests use the session's `slurm_cluster` fixture from tests/conftest.py (the rehearsal shares it)."""
