"""The study's twin is derived from the study: every key stays as the study wrote it except the listed sizes, the
sample corpora, the stand-in models with their GPU swaps, and the loopback API; and every change is listed."""

from __future__ import annotations

from pathlib import Path

import yaml

from counseltune.study import apply_overrides, load_study
from counseltune.rehearsal.twin import SIZES, twin_of
from tests.conftest import REPO

STUDY = REPO / "studies" / "mi-study.yaml"
URL = "http://127.0.0.1:9/v1"


def flat(tree, prefix=""):
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in flat(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: tree}


def test_every_difference_from_the_study_is_a_listed_change(params, tmp_path):
    twin = twin_of(STUDY, params, URL, tmp_path / "stand-ins")
    study = flat(apply_overrides(params, load_study(STUDY)))
    rehearsal = flat(apply_overrides(params, twin.overrides))
    differ = {key for key in study.keys() | rehearsal.keys() if study.get(key) != rehearsal.get(key)}
    listed = {line.split(":")[0] for line in twin.changes}
    # a change of a mapping (a swapped source, the distributed strategy) is one listed line for all of its keys
    covered = {key: [c for c in listed if key == c or key.startswith(c + ".")] for key in differ}
    assert all(covered.values()), {key for key, by in covered.items() if not by}
    assert listed <= {c for by in covered.values() for c in by}, listed
    assert not any(key.startswith(("evaluate.", "sft.", "llm.prices", "fidelity.judge.m", "synthesize.filters"))
                   for key in differ - {"fidelity.judge.max_sessions"}), differ


def test_the_twin_keeps_the_study_settings_that_are_not_sizes(params, tmp_path):
    twin = twin_of(STUDY, params, URL, tmp_path)
    applied = apply_overrides(params, twin.overrides)
    assert applied["run"]["models"] == ["baichuan2-7b-chat", "glm-4-9b-chat", "llama-3.1-8b-instruct"]
    assert applied["models"]["baichuan2-7b-chat"]["source"] == {"path": str(tmp_path / "baichuan2"),
                                                                "trust_remote_code": True}
    assert applied["models"]["glm-4-9b-chat"]["template"] == params["models"]["glm-4-9b-chat"]["template"]
    assert applied["llm"]["remote"]["model"] == "gpt-4-0613" and applied["llm"]["remote"]["base_url"] == URL
    generator = applied["synthesize"]["generators"]["mi_plain"]
    assert generator["n_sessions"] == SIZES["synthesize.generators.*.n_sessions"] and generator["language"] == "zh"


def test_the_twin_file_applies_like_any_study(params, tmp_path):
    twin = twin_of(STUDY, params, URL, Path("models/stand-ins"))
    path = tmp_path / "twin.yaml"
    path.write_text(twin.yaml_text(STUDY), encoding="utf-8")
    assert yaml.safe_load(path.read_text(encoding="utf-8")) == twin.overrides
    assert "#   models.glm-4-9b-chat.distributed: fsdp -> single" in path.read_text(encoding="utf-8")
