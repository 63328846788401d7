"""Real Snakemake and DVC runs of the embedded default in temp copies: same tables, only stale work redone,
and a tree handed from one engine to the other is up to date in both."""

import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.dag.project import copy_project, dvc, dvc_repro_ran, run, snakemake, snakemake_pending_jobs

pytestmark = pytest.mark.slow

TABLES = ["data/processed/dialogs.parquet", "data/processed/turns.parquet", "data/processed/quarantine.parquet"]
SOURCES = {"cpsycound", "cpsycoune", "annomi", "kmi"}
CHAIN = {"curate", "report_data"}


@pytest.fixture(scope="module")
def by_snakemake(tmp_path_factory) -> Path:
    root = copy_project(tmp_path_factory.mktemp("snakemake"))
    snakemake(root, "--cores", "2", "data")
    return root


@pytest.fixture(scope="module")
def by_dvc(tmp_path_factory) -> Path:
    root = copy_project(tmp_path_factory.mktemp("dvc"))
    assert dvc_repro_ran(root, "report_data") == {f"ingest@{s}" for s in SOURCES} | CHAIN
    return root


def edit_params(root: Path, change) -> None:
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(params)
    path.write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False), encoding="utf-8")


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8", newline="") as handle:
        handle.write(text)


def test_snakemake_run_writes_every_output_and_a_report(by_snakemake):
    for table in TABLES:
        assert pl.read_parquet(by_snakemake / table).height > 0 or "quarantine" in table
    report = (by_snakemake / "data/processed/report.md").read_text(encoding="utf-8")
    assert "exact_duplicate" in report and "![turns per dialog]" in report
    assert (by_snakemake / "data/processed/figures/utterance_length.png").stat().st_size > 1000
    assert snakemake_pending_jobs(by_snakemake, "data") == set()


def test_both_engines_produce_identical_tables(by_snakemake, by_dvc):
    for table in TABLES + [f"data/interim/{s}/turns.parquet" for s in SOURCES]:
        assert pl.read_parquet(by_snakemake / table).equals(pl.read_parquet(by_dvc / table)), table
    assert (by_snakemake / "metrics/curate.json").read_text() == (by_dvc / "metrics/curate.json").read_text()


def test_curated_tables_hold_the_documented_facts(by_snakemake):
    dialogs = pl.read_parquet(by_snakemake / "data/processed/dialogs.parquet")
    quarantine = pl.read_parquet(by_snakemake / "data/processed/quarantine.parquet")
    # the sample keeps CPsyCounD's triple duplicate: the first (case_1762) stays, the other two are dropped
    dropped = quarantine.filter(pl.col("reason") == "exact_duplicate")["record"].to_list()
    assert sorted(dropped) == ["cpsycound:case_2274", "cpsycound:case_2301"]
    assert "cpsycound:case_1762" in dialogs["dialog_id"].to_list()
    assert set(dialogs.filter(pl.col("source") == "cpsycoune")["split"]) == {"test"}
    assert set(dialogs["split"]) == {"train", "val", "test"}


def test_editing_one_raw_file_reruns_that_source_and_curation_only_in_snakemake(by_snakemake):
    append(by_snakemake / "data/sample/CPsyCounD/Data/case_0.txt", "\n来访者：谢谢你。\n")
    assert snakemake_pending_jobs(by_snakemake, "data") == {"ingest@cpsycound"} | CHAIN
    snakemake(by_snakemake, "--cores", "2", "data")
    assert snakemake_pending_jobs(by_snakemake, "data") == set()


def test_editing_one_raw_file_reruns_that_source_and_curation_only_in_dvc(by_dvc):
    append(by_dvc / "data/sample/CPsyCounD/Data/case_0.txt", "\n来访者：谢谢你。\n")
    assert dvc_repro_ran(by_dvc, "report_data") == {"ingest@cpsycound"} | CHAIN
    assert dvc_repro_ran(by_dvc, "report_data") == set()


def test_changing_one_sources_params_reruns_only_its_chain(by_snakemake, by_dvc):
    def english_kmi(params):
        params["sources"]["kmi"]["options"]["text_language"] = "en"
        params["sources"]["kmi"]["language"] = "en"

    for root in (by_snakemake, by_dvc):
        edit_params(root, english_kmi)
    assert snakemake_pending_jobs(by_snakemake, "data") == {"ingest@kmi"} | CHAIN
    assert dvc_repro_ran(by_dvc, "report_data") == {"ingest@kmi"} | CHAIN


def test_changing_a_curation_param_reruns_curation_only(by_snakemake, by_dvc):
    for root in (by_snakemake, by_dvc):
        edit_params(root, lambda p: p["curate"].update(min_turns=6))
    assert snakemake_pending_jobs(by_snakemake, "data") - {"ingest@kmi"} == CHAIN  # kmi may still be pending from above
    assert dvc_repro_ran(by_dvc, "report_data") == CHAIN


def test_editing_one_format_module_reruns_only_the_sources_that_use_it(by_dvc):
    append(by_dvc / "src/counseltune/ingest/annomi.py", "\n# a comment changes the code hash\n")
    ran = dvc_repro_ran(by_dvc, "report_data")
    assert "ingest@annomi" in ran and not ran & {f"ingest@{s}" for s in SOURCES - {"annomi"}}


def test_a_snakemake_tree_handed_to_dvc_is_up_to_date(tmp_path):
    root = copy_project(tmp_path)
    snakemake(root, "--cores", "2", "data")
    dvc(root, "commit", "--force", "report_data", "--with-deps")  # README: after Snakemake, record its outputs
    assert "up to date" in dvc(root, "status", "report_data", "--with-deps").stdout
    assert dvc_repro_ran(root, "report_data") == set()


def test_a_dvc_tree_handed_to_snakemake_is_up_to_date(tmp_path):
    root = copy_project(tmp_path)
    dvc(root, "repro", "report_data")
    snakemake(root, "--touch", "--cores", "1", "data")  # README: after DVC, mark its outputs current for Snakemake
    assert snakemake_pending_jobs(root, "data") == set()


def test_a_source_over_its_quarantine_threshold_fails_the_rule_naming_files_and_reasons(tmp_path):
    root = copy_project(tmp_path)
    for case in ("case_0.txt", "case_1.txt", "case_2.txt"):
        (root / "data/sample/CPsyCounD/Data" / case).write_bytes(b"\xff\xfe broken")
    result = snakemake(root, "--cores", "1", "data/interim/cpsycound/dialogs.parquet", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "ingest[cpsycound]" in output and "invalid_utf8" in output and "case_0.txt" in output
    assert "max_quarantine_share" in output
    assert not (root / "data/interim/cpsycound/dialogs.parquet").exists()


def test_a_dvc_tracked_raw_corpus_feeds_its_ingest(tmp_path):
    """README "Full data": `dvc add` a corpus under data/raw/ and point its source at it."""
    root = copy_project(tmp_path)
    shutil.copytree(root / "data/sample/KMI_prerelease", root / "data/raw/KMI_prerelease")
    dvc(root, "add", "data/raw/KMI_prerelease")
    assert (root / "data/raw/KMI_prerelease.dvc").exists()
    edit_params(root, lambda p: p["sources"]["kmi"].update(path="data/raw/KMI_prerelease"))
    assert "ingest@kmi" in dvc_repro_ran(root, "report_data")
    assert "up to date" in dvc(root, "status", "report_data", "--with-deps").stdout
    append(next((root / "data/raw/KMI_prerelease").glob("KMI_*.json")), "\n")
    status = dvc(root, "status", "report_data", "--with-deps").stdout
    assert "data/raw/KMI_prerelease.dvc" in status and "ingest@kmi" in status


def test_outputs_pushed_to_a_dvc_remote_are_pulled_into_a_fresh_clone_up_to_date(tmp_path):
    """README "Reproducing a study": push from one clone, clone + pull elsewhere, nothing left to run."""
    root = copy_project(tmp_path / "first")
    dvc(root, "repro", "report_data")
    dvc(root, "remote", "add", "-d", "shared", str(tmp_path / "remote"))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    run([*git, "add", "-A"], root)  # dvc.lock, .dvc/config and the uncached metrics travel through git
    run([*git, "commit", "-qm", "run"], root)
    dvc(root, "push", "report_data", "--with-deps")  # the model stages of dvc.yaml were not run here
    clone = tmp_path / "second"
    run(["git", "clone", "-q", str(root), str(clone)], tmp_path)
    assert not (clone / "data/processed/turns.parquet").exists()
    dvc(clone, "pull", "report_data", "--with-deps")
    assert (clone / "data/processed/turns.parquet").read_bytes() == (root / "data/processed/turns.parquet").read_bytes()
    assert "up to date" in dvc(clone, "status", "report_data", "--with-deps").stdout
    snakemake(clone, "--touch", "--cores", "1", "data")  # the documented hand-over to Snakemake
    assert snakemake_pending_jobs(clone, "data") == set()
