"""A job whose inputs an engine declared for another llm.backend stops with one line naming the fix."""

from pathlib import Path

import yaml

from counseltune import cli
from tests.conftest import REPO


def test_a_job_declared_for_another_backend_stops_with_the_fix(tmp_path, capsys):
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    assert params["llm"]["backend"] == "local"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    code = cli.main(["judge-validation", "--params", str(tmp_path / "params.yaml"), "--held-out", str(tmp_path / "h"),
                     "--codes", str(tmp_path / "c.parquet"), "--metrics", str(tmp_path / "m.json"),
                     "--inputs-for-backend", "openai"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert "declared for llm.backend openai, but params.yaml sets llm.backend local" in err
    assert "counseltune code-deps --write" in err
    assert not Path(tmp_path / "m.json").exists()
