"""Pipeline branches meet only through tables: no stage module imports a stage module of another branch.

Each package or top-level module of counseltune belongs to one pipeline branch (data, synthesis, training,
evaluation, fidelity, reports), to the shared house (what every branch may use: the LLM clients, model loading and
generation, table contracts, params), or is an entry point (the CLI and the rehearsal tools, which may call any
stage and which no stage imports). A branch module may import its own branch and the shared house; a shared module
only the shared house. Otherwise editing one branch's code re-runs another branch's stages (both engines hash a
stage's import closure, codedeps.py), which is how editing the predict stage once re-ran synthesis: the local LLM
client imported its generation from predict.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from counseltune.codedeps import CodeTree
from tests.conftest import REPO

BRANCHES = {
    "data": ("ingest", "curate", "sample"),
    "synthesis": ("synthesize",),
    "training": ("train",),
    "evaluation": ("evaluate", "predict", "predict_served"),
    "fidelity": ("fidelity",),
    "reports": ("report",),
    "shared": ("llm", "models", "tables", "schemas", "text", "config", "errors", "stage_params", "codedeps",
               "processes", "serve_args", "study", "dedupe", "llm_inputs", "instruments"),  # and any part not named here
    "entry": ("cli", "rehearsal"),
}
# Imports still to be replaced, each with what replaces it. The test fails when one of them is gone, so the list
# only shrinks. (Empty since the instruments' definitions moved to counseltune/instruments/.)
PENDING: dict[tuple[str, str], str] = {}


def branch_of(module: str) -> str:
    """counseltune.<part>[...] -> its branch. A part no branch claims is shared, so it may import only shared
    modules: a new module that reaches into a branch is named here until it is placed in BRANCHES."""
    part = module.split(".")[1] if "." in module else "__init__"
    return next((branch for branch, parts in BRANCHES.items() if part in parts), "shared")


def allowed(importer: str, imported: str) -> bool:
    mine, theirs = branch_of(importer), branch_of(imported)
    if mine == "entry":
        return True
    if theirs == "entry":
        return False
    return theirs in ("shared", mine)


def modules(tree: CodeTree) -> list[str]:
    files = [p for root in (tree.src, tree.schemas) for p in root.rglob("*.py") if "__pycache__" not in p.parts]
    return sorted(tree.module_name(p) for p in files)


def cross_branch_imports(repo: Path) -> dict[tuple[str, str], str]:
    """(importer, imported) -> 'importer (branch) imports imported (branch)' for every import the rule forbids."""
    tree = CodeTree(repo)
    out = {}
    for importer in modules(tree):
        for imported in sorted(tree.module_imports(importer)):
            if tree.exists(imported) and not allowed(importer, imported):
                out[(importer, imported)] = (f"{importer} ({branch_of(importer)}) imports {imported} "
                                             f"({branch_of(imported)})")
    return out


def test_no_stage_module_imports_a_stage_module_of_another_branch():
    found = cross_branch_imports(REPO)
    new = [line for edge, line in found.items() if edge not in PENDING]
    assert not new, "cross-branch imports (meet through a table, or move the helper to a shared module):\n" + \
        "\n".join(new)


def test_the_pending_exceptions_still_exist():
    gone = sorted(set(PENDING) - set(cross_branch_imports(REPO)))
    assert not gone, f"fixed: remove them from PENDING: {gone}"


@pytest.fixture
def tree_copy(tmp_path) -> Path:
    import shutil

    for name in ("src", "schemas"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_local_llm_client_importing_predict_is_caught_by_name(tree_copy):
    """The drift that made editing predict.py re-run synthesis: llm/local.py took its generation from predict.py."""
    local = tree_copy / "src/counseltune/llm/local.py"
    local.write_text(local.read_text(encoding="utf-8").replace(
        "from counseltune.models.generate import", "from counseltune.predict import"), encoding="utf-8")

    found = cross_branch_imports(tree_copy)

    assert found[("counseltune.llm.local", "counseltune.predict")] == \
        "counseltune.llm.local (shared) imports counseltune.predict (evaluation)"
