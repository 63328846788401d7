"""Synthesis counts in the comparison report: the real synthesize stage (mi_plain against a loopback OpenAI endpoint
that writes some sessions in the wrong language, so some are quarantined and replaced) and the real sft-data stage
mixing half of them in, then report-compare on the report tests' evaluated toy models."""

from __future__ import annotations

import copy
import json

import pytest

from counseltune.errors import CounseltuneError
from counseltune.report.compare import synthesis_section, write_comparison
from counseltune.report.document import Document
from counseltune.report.synthesis import synthesis_rows
from counseltune.synthesize.run import synthesize
from counseltune.train.sft_data import build_sft_data
from tests.report.test_reports import run  # noqa: F401 - the evaluated toy models (fixture)
from tests.synthesize.helpers import processed_dir
from tests.synthesize.test_replacement import PARAMS, client_for, endpoint, every_third_english  # noqa: F401

SMOL = "smollm2-135m-instruct"


@pytest.fixture
def synthesized(endpoint, params, tmp_path):  # noqa: F811
    """metrics/synthesize/mi_plain.json from the real stage; data/synthetic/mi_plain; its processed seed tables."""
    p = copy.deepcopy(params)
    p["synthesize"] = {**p["synthesize"], **PARAMS["synthesize"], "run": ["mi_plain"]}
    p["sft"]["synthetic"] = {"mi_plain": 0.5}
    processed = processed_dir(tmp_path / "processed", with_annomi=False)
    server = endpoint(every_third_english)
    stats = synthesize(p, "mi_plain", processed, tmp_path / "synthetic" / "mi_plain", client_for(server, tmp_path / "cache"),
                       metrics_path=tmp_path / "metrics/synthesize/mi_plain.json")
    return p, processed, stats


def test_the_report_shows_each_generators_counts_and_its_mix_into_sft(synthesized, run, base_model_dir, tmp_path):  # noqa: F811
    p, processed, stats = synthesized
    root, report_params = run
    assert stats["n_quarantined"] > 0 and len(stats["attempt_rounds"]) >= 2  # rejected sessions were replaced
    # the real sft-data stage, with and without the synthetic mix: the difference is what it actually mixed in
    base = base_model_dir(SMOL)
    sft = build_sft_data(p, SMOL, base, processed, tmp_path / "sft", tmp_path / "metrics/sft" / f"{SMOL}.json",
                         synthetic_dir=tmp_path / "synthetic")
    no_synth = copy.deepcopy(p)
    no_synth["sft"]["synthetic"] = {}
    real_only = build_sft_data(no_synth, SMOL, base, processed, tmp_path / "sft0", tmp_path / "sft0.json")
    total = sum(s["dialogs"] for s in sft["splits"].values())
    mixed = total - sum(s["dialogs"] for s in real_only["splits"].values())
    assert 0 < mixed < stats["n_accepted"]  # half of them, by hash

    report_params["synthesize"] = p["synthesize"]
    out = root / "comparison"
    write_comparison(report_params, root / "eval", root / "scores", out, synthesize_dir=tmp_path / "metrics/synthesize",
                     sft_dir=tmp_path / "metrics/sft")
    markdown = (out / "report.md").read_text(encoding="utf-8")
    rate = f"{stats['n_accepted'] / stats['n_attempted']:.1%}"
    in_sft = f"{mixed} ({mixed / total:.1%} of {total})"
    # gemma3-270m has no sft stats here: its cell says so, beside the model that has them
    row = (f"| mi_plain | zh | 4 | {stats['n_attempted']} | 4 | {stats['n_quarantined']} | {rate} | "
           f"{len(stats['attempt_rounds'])} | target_reached | {SMOL}: {in_sft}; gemma3-270m: - |")
    assert "## Synthetic sessions" in markdown and row in markdown, markdown[markdown.find("## Synthetic"):][:800]


def test_a_generator_in_a_language_sft_does_not_keep_is_mixed_in_zero_times(synthesized, tmp_path):
    _, _, stats = synthesized
    sft = tmp_path / "sft"
    sft.mkdir()
    (sft / "m.json").write_text(json.dumps({"languages": ["en"], "synthetic_dialogs": {"mi_plain": 2},
                                            "splits": {"train": {"dialogs": 10}, "val": {"dialogs": 2}}}))
    [row] = synthesis_rows(["mi_plain"], tmp_path / "metrics/synthesize", sft, ["m"])
    assert (row.mix["m"].dialogs, row.mix["m"].sft_dialogs) == (0, 12)
    markdown = Document("run", [synthesis_section([row], ["m"])]).to_markdown()
    assert "| 0 (0.0% of 12) |" in markdown


def test_a_missing_synthesize_stats_file_is_one_clear_error(tmp_path):
    with pytest.raises(CounseltuneError, match="mi_plain.json not found: synthesize.run names 'mi_plain'"):
        synthesis_rows(["mi_plain"], tmp_path, None, ["m"])
    assert "No synthesis in this run" in Document("run", [synthesis_section([], ["m"])]).to_markdown()
