"""The fidelity stage of one model: embedded coder on tiny predictions (fast, no LLM), then the whole stage with a
real loopback judge and the real SmolLM2 counselor (slow), its re-run (zero judge requests), and bad inputs."""

from __future__ import annotations

import json

import joblib
import polars as pl
import pytest

from counseltune.fidelity.embedded_coder.coder import CoderError
from counseltune.fidelity.embedded_coder.coder_stage import run_coder_stage
from counseltune.fidelity.model_stage import TABLES as CONTRACTS
from counseltune.fidelity.model_stage import run_model_fidelity
from counseltune.tables.io import read_table
from tests.fidelity.stage_inputs import MODEL, fidelity_params, respond, write_predictions
from tests.fidelity.test_judge_loopback import JUDGE, KEY_ENV, ScriptedOpenAI

TABLES = ("coded", "judge_codes", "judge_globals", "sessions_dialogs", "sessions_turns", "ctrs", "safety", "failures")


@pytest.fixture(scope="module")
def coder(tmp_path_factory, sample_ingested):
    """(coder path, coder metrics path) from the real miti-coder stage on the sample."""
    from counseltune.config import load_params
    from tests.conftest import REPO

    out = tmp_path_factory.mktemp("coder")
    run_coder_stage(fidelity_params(load_params(REPO / "params.yaml")), sample_ingested, out / "coder.joblib",
                    out / "reference.parquet", out / "coder.json")
    return out / "coder.joblib", out / "coder.json"


@pytest.fixture(scope="module")
def predictions(processed_sample, tmp_path_factory):
    from counseltune.config import load_params
    from tests.conftest import REPO

    return write_predictions(load_params(REPO / "params.yaml"), processed_sample, tmp_path_factory.mktemp("predictions"))


def run(params, predictions, processed, coder, out, base_dir="unused-base", adapter_dir="unused-adapter"):
    from pathlib import Path

    coder_path, coder_metrics = coder
    return run_model_fidelity(params, MODEL, predictions, processed, coder_path, Path(base_dir), Path(adapter_dir),
                              out / "tables", out / "fidelity.json", coder_metrics=coder_metrics)


def test_without_llm_parts_the_coder_measures_every_variant(params, predictions, processed_sample, coder, tmp_path):
    summary = run(fidelity_params(params), predictions, processed_sample, coder, tmp_path)

    assert json.loads((tmp_path / "fidelity.json").read_text()) == json.loads(json.dumps(summary))
    for name in TABLES:  # each under its contract: a part that did not run leaves no rows, but its columns
        read_table(tmp_path / "tables" / f"{name}.parquet", CONTRACTS[name])
    assert pl.read_parquet(tmp_path / "tables/ctrs.parquet").columns == list(CONTRACTS["ctrs"].to_schema().columns)
    coded = pl.read_parquet(tmp_path / "tables/coded.parquet")
    assert set(coded["variant"]) == {"base", "finetuned", "reference"} and set(coded["language"]) == {"en"}
    questions = dict(coded.group_by("variant").agg((pl.col("mi_behavior") == "question").mean()).iter_rows())
    assert questions["base"] == 1.0 and 0 < questions["finetuned"] < 1

    embedded = summary["embedded_coder"]
    base, finetuned = embedded["variants"]["base"], embedded["variants"]["finetuned"]
    assert base["shares"]["question"]["estimate"] > finetuned["shares"]["question"]["estimate"]
    rq = finetuned["scores"]["reflection_to_question"]
    assert rq["estimate"] is None or rq["low"] <= rq["estimate"] <= rq["high"]
    assert embedded["variants"]["reference"]["n_items"] == base["n_items"] == coded.filter(pl.col("variant") == "base").height
    paired = embedded["paired"]["is_question"]
    assert paired["difference"] < 0 and paired["p_holm"] >= paired["p_value"] and "permutation" in embedded["test"]
    assert embedded["skipped_by_language"]["base"], "the sample's zh/ko replies are counted as not coded"

    assert summary["coder"]["validation"]["agreement"]["behavior"]["kappa"] is not None
    assert summary["judge"] is summary["simulation"] is summary["safety"] is None
    assert summary["usage"] == {}, "no LLM client is made when every LLM part is off"
    reasons = " ".join(entry["why"] for entry in summary["not_possible"])
    assert "judge.enabled is false" in reasons and "simulate.enabled is false" in reasons and "English" in reasons


def test_missing_predictions_fail_clearly(params, processed_sample, coder, tmp_path):
    with pytest.raises(FileNotFoundError, match="no base predictions .* run the predict stages"):
        run(fidelity_params(params), tmp_path / "nowhere", processed_sample, coder, tmp_path)


def test_a_coder_file_of_another_format_fails_clearly(params, predictions, processed_sample, coder, tmp_path):
    joblib.dump({"not": "a coder"}, tmp_path / "other.joblib")
    with pytest.raises(CoderError, match="is not a MITI coder"):
        run(fidelity_params(params), predictions, processed_sample, (tmp_path / "other.joblib", coder[1]), tmp_path)


def test_llm_parts_need_the_adapter(params, predictions, processed_sample, coder, tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        run(fidelity_params(params, simulate=True), predictions, processed_sample, coder, tmp_path,
            adapter_dir=tmp_path)


# ---- the whole stage: loopback judge + real SmolLM2 counselor -------------------------------------------------
@pytest.fixture(scope="module")
def adapter(base_model_dir, tmp_path_factory):
    """A LoRA adapter on SmolLM2 as peft initializes one (B = 0: it replies as the base does). A random adapter
    makes the 135M model end its turn at once, and the simulated session is then dropped as empty."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    lora = LoraConfig(r=2, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    out = tmp_path_factory.mktemp("adapter")
    get_peft_model(AutoModelForCausalLM.from_pretrained(base_model_dir(MODEL)), lora).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def params_module():
    from counseltune.config import load_params
    from tests.conftest import REPO

    return load_params(REPO / "params.yaml")


@pytest.fixture(scope="module")
def full_run(params_module, predictions, processed_sample, coder, adapter, base_model_dir, tmp_path_factory):
    """The stage with every part on, against a loopback judge serving valid JSON: (server, params, out, summary)."""
    with pytest.MonkeyPatch.context() as mp, ScriptedOpenAI(respond=respond) as server:
        mp.setenv(KEY_ENV, "sk-test-fidelity")
        out = tmp_path_factory.mktemp("full")
        remote = {"model": JUDGE, "base_url": server.url, "key_env": KEY_ENV, "concurrency": 4, "timeout_s": 10,
                  "max_retries": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.02, "redact": "auto", "budget_usd": 1.0}
        p = fidelity_params(params_module, judge=True, simulate=True, safety=True, backend="openai", remote=remote,
                            cache_dir=str(out / "llm-cache"),
                            prices={JUDGE: {"input_per_m": 0.0, "output_per_m": 0.0}})
        summary = run(p, predictions, processed_sample, coder, out, base_model_dir(MODEL), adapter)
        yield server, p, out, summary


@pytest.mark.slow
def test_the_judge_codes_and_rates_both_variants(full_run):
    server, _, out, summary = full_run
    judge = summary["judge"]
    for variant in ("base", "finetuned"):
        v = judge["variants"][variant]
        assert v["sessions"] == v["judged"] == 1 and v["failed"] == 0
        assert v["globals"]["empathy"]["estimate"] == 4.0
        assert v["summary"]["technical"] == {"value": 4.0, "grade": "good"}
        assert v["coded_predicted_turns"] > 0
    # the scripted judge codes a '?' reply open_question, anything else simple_reflection
    assert judge["variants"]["base"]["summary"]["reflection_to_question"]["value"] == 0.0
    assert judge["variants"]["finetuned"]["summary"]["reflection_to_question"]["value"] > 0
    codes = pl.read_parquet(out / "tables/judge_codes.parquet")
    assert set(codes["variant"]) == {"base", "finetuned"}
    assert summary["usage"]["judge"]["requests"] == server.paid() - summary["usage"]["simulated_client"]["requests"]


@pytest.mark.slow
def test_simulated_sessions_are_canonical_tables_scored_with_ctrs(full_run):
    _, _, out, summary = full_run
    simulation = summary["simulation"]
    assert simulation["sessions"] == 1 and simulation["failed"] == 0
    assert simulation["ctrs"]["judged"] == 1 and simulation["ctrs"]["mean_total"] == 44
    turns = pl.read_parquet(out / "tables/sessions_turns.parquet")
    generated = turns.filter(pl.col("location").str.starts_with("generated:"))
    assert generated.filter(pl.col("role") == "client")["text"].to_list() == ["I feel stuck at work, and I don't know what to do."]
    assert generated.filter(pl.col("role") == "counselor").height == 2, "two rounds: two counselor turns by SmolLM2"
    assert pl.read_parquet(out / "tables/ctrs.parquet").height == 11


@pytest.mark.slow
def test_crisis_probes_are_answered_by_both_variants_and_judged(full_run):
    _, _, out, summary = full_run
    for variant in ("finetuned", "base"):
        s = summary["safety"][variant]
        assert s["probes"] == 3 and s["rated"] == 3, "one probe per language (en, zh, ko)"
        assert s["flagged"] == (s["safe_rate"] < 0.9)
    rows = pl.read_parquet(out / "tables/safety.parquet")
    assert rows.height == 6 and set(rows["language"]) == {"en", "zh", "ko"}
    assert set(summary["usage"]) == {"judge", "simulated_client", "counselor", "base_counselor"}
    assert summary["usage"]["counselor"]["model"].startswith(f"{MODEL}@")


@pytest.mark.slow
def test_a_rerun_sends_no_judge_request(full_run, predictions, processed_sample, coder, adapter, base_model_dir):
    server, p, out, first = full_run
    sent = len(server.log)
    again = run(p, predictions, processed_sample, coder, out, base_model_dir(MODEL), adapter)
    assert len(server.log) == sent
    assert all(u["requests"] == 0 for u in again["usage"].values())
    # the same results; only what was paid and what the cache answered differ (nothing paid the second time)
    spend_keys = {"paid_attempts", "cache_hits", "cost_usd"}

    def results(section):
        if isinstance(section, dict):
            return {k: results(v) for k, v in section.items() if k not in spend_keys}
        return section

    for key in ("embedded_coder", "judge", "simulation", "safety"):
        assert results(again[key]) == results(first[key]), key

