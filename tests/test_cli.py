"""The CLI: every stage explains itself, and errors name the stage, file and what to do."""

import subprocess
import sys

import pytest

from counseltune.cli import main

STAGES = ["check-params", "ingest", "curate", "report-data", "base-model", "sft-data", "finetune", "predict",
          "evaluate", "report-model", "report-compare", "make-sample"]


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "counseltune.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_help_lists_every_stage():
    out = run_cli("--help").stdout
    for stage in STAGES:
        assert stage in out


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_has_a_help_that_names_its_paths(stage):
    result = run_cli(stage, "--help")
    assert result.returncode == 0
    assert "--params" in result.stdout and "usage: counseltune " + stage in result.stdout


def test_no_stage_prints_help_and_fails():
    assert main([]) == 2


def test_ingest_writes_tables_and_stats(tmp_path, repo):
    out = tmp_path / "kmi"
    result = run_cli("ingest", "--source", "kmi", "--raw", "data/sample/KMI_prerelease", "--out-dir", str(out),
                     "--stats", str(tmp_path / "kmi.json"), cwd=repo)
    assert result.returncode == 0, result.stderr
    assert "ingest[kmi]: 24 records -> 24 dialogs" in result.stdout
    assert {p.name for p in out.iterdir()} == {"dialogs.parquet", "turns.parquet", "quarantine.parquet"}


def test_a_missing_raw_folder_says_which_param_to_fix(tmp_path, repo):
    result = run_cli("ingest", "--source", "kmi", "--raw", str(tmp_path / "nowhere"), "--out-dir", str(tmp_path / "o"),
                     "--stats", str(tmp_path / "s.json"), cwd=repo)
    assert result.returncode == 1
    assert "counseltune ingest: error:" in result.stderr and "sources.kmi.path" in result.stderr
    assert "Traceback" not in result.stderr


def test_too_much_quarantine_fails_with_files_reasons_and_the_param(tmp_path, repo):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "case_1.txt").write_bytes("来访者：你好。\n\n心理咨询师：你好，请坐。\n".encode())
    (raw / "case_2.txt").write_bytes(b"\xff\xfe")
    (raw / "case_3.txt").write_text("开头没有说话人。\n来访者：你好。\n", encoding="utf-8")
    result = run_cli("ingest", "--source", "cpsycound", "--raw", str(raw), "--out-dir", str(tmp_path / "o"),
                     "--stats", str(tmp_path / "s.json"), cwd=repo)
    assert result.returncode == 1
    err = result.stderr
    assert "ingest[cpsycound]: 2 of 3 files quarantined" in err
    assert "invalid_utf8" in err and "case_2.txt" in err and "text_before_first_speaker" in err and "case_3.txt" in err
    assert "sources.cpsycound.max_quarantine_share" in err
    assert not (tmp_path / "o").exists()
