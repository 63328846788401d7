"""The CLI: every stage explains itself, and errors name the stage, file and what to do."""

import subprocess
import sys

import pytest

from counseltune.cli import main

STAGES = ["check-params", "ingest", "curate", "report-data", "base-model", "sft-data", "finetune", "predict",
          "evaluate", "report-model", "report-compare", "make-sample", "judge-validation"]


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


def test_an_out_dir_that_cannot_be_a_folder_is_one_line_not_a_traceback(tmp_path, repo):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    result = run_cli("ingest", "--source", "kmi", "--raw", "data/sample/KMI_prerelease", "--out-dir",
                     str(blocker / "kmi"), "--stats", str(tmp_path / "kmi.json"), cwd=repo)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"counseltune ingest: error: {blocker / 'kmi'}: Not a directory")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "kmi.json").exists()


@pytest.mark.parametrize("source, name, content", [
    ("kmi", "KMI_empty.json", "[]"),
    ("annomi", "AnnoMI-full.csv", "mi_quality,transcript_id,video_title,video_url,topic,utterance_id,interlocutor,"
     "timestamp,utterance_text,annotator_id,therapist_input_exists,therapist_input_subtype,reflection_exists,"
     "reflection_subtype,question_exists,question_subtype,main_therapist_behaviour,client_talk_type\n"),
])
def test_a_source_with_no_records_fails_naming_the_source_and_path(tmp_path, repo, source, name, content):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / name).write_text(content, encoding="utf-8")
    result = run_cli("ingest", "--source", source, "--raw", str(raw), "--out-dir", str(tmp_path / "o"),
                     "--stats", str(tmp_path / "s.json"), cwd=repo)
    assert result.returncode == 1
    assert result.stderr.startswith(f"counseltune ingest: error: ingest[{source}]: no ")
    assert str(raw) in result.stderr and f"sources.{source}.path" in result.stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / "s.json").exists()


def test_a_stage_error_outside_the_old_list_is_one_line_too(tmp_path, repo, monkeypatch, capsys):
    """Every CounseltuneError subclass is caught (before, only a fixed list was: a MitiError was a traceback)."""
    from counseltune.instruments.miti import MitiError

    def fail(args):
        raise MitiError("counts do not fit MITI 4.2.1")

    monkeypatch.setattr("counseltune.cli._check_params", fail)
    assert main(["check-params"]) == 1
    assert capsys.readouterr().err == "counseltune check-params: error: counts do not fit MITI 4.2.1\n"



def test_a_missing_input_reported_by_a_stage_is_one_line(monkeypatch, capsys):
    """Stages raise FileNotFoundError("no X at P: run stage Y first") for an input that is not there yet."""
    def fail(args):
        raise FileNotFoundError("no base predictions of m at predictions/m/base.parquet: run the predict stages first")

    monkeypatch.setattr("counseltune.cli._check_params", fail)
    assert main(["check-params"]) == 1
    assert capsys.readouterr().err == ("counseltune check-params: error: no base predictions of m at "
                                       "predictions/m/base.parquet: run the predict stages first\n")


def test_judge_validation_without_the_held_out_tables_says_which_stage_to_run(tmp_path, repo):
    result = run_cli("judge-validation", "--held-out", str(tmp_path / "held_out"), "--codes", str(tmp_path / "c.parquet"),
                     "--metrics", str(tmp_path / "v.json"), cwd=repo)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "held_out/dialogs.parquet: run the stage that writes it first" in result.stderr


def test_an_undeclared_source_is_one_line_and_makes_no_folder(tmp_path, repo):
    result = run_cli("ingest", "--source", "nope", "--raw", "data/sample/KMI_prerelease", "--out-dir",
                     str(tmp_path / "o"), "--stats", str(tmp_path / "s.json"), cwd=repo)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("counseltune ingest: error: source 'nope' is not declared under sources:")
    assert not (tmp_path / "o").exists()
