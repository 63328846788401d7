"""Whether a stage's LLM client needs a local model as an input: the local backend's base model, or nothing.

synthesize, judge-validation and fidelity talk to the `llm:` client (fidelity also to its own counselor, which is
always local). With llm.backend local the client's model, models/base/<llm.local.model>, is an input of those
jobs; with a remote backend nothing builds or loads it. Snakemake decides from its config
(workflow/rules/synthesize.smk). dvc.yaml is static, so `counseltune code-deps --write` writes the dep for
params.yaml's backend (`counseltune study apply` runs it), and each command carries `--inputs-for-backend`: a job
whose inputs were declared for another backend (params.yaml changed since, e.g. by `dvc exp run -S`) stops with
the fix instead of running without its model as a tracked input.
"""

from __future__ import annotations

from counseltune.errors import CounseltuneError

LLM_CLIENT_COMMANDS = ("synthesize", "judge-validation", "fidelity")
LOCAL_LLM_DEP = "models/base/${llm.local.model}"  # as dvc.yaml writes it
FLAG = "--inputs-for-backend"


class InputsForAnotherBackend(CounseltuneError):
    """The engine declared this job's inputs for another llm.backend than params.yaml's."""


def check_declared_backend(command: str, declared: str | None, backend: str) -> None:
    """Refuse a job whose engine declared its inputs for another backend (None: not said, e.g. a direct call)."""
    if declared is not None and declared != backend:
        raise InputsForAnotherBackend(
            f"this job's inputs were declared for llm.backend {declared}, but params.yaml sets llm.backend {backend}: "
            f"dvc.yaml lists the local LLM's model as an input of {', '.join(LLM_CLIENT_COMMANDS)} only for the local "
            "backend, so rewrite it with `counseltune code-deps --write` (`counseltune study apply` does) and run "
            "again")
