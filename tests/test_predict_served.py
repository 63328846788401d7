"""The served prediction path (predict.engine: served) against a real loopback `counseltune serve` around the
embedded SmolLM2: greedy predictions equal the in-process ones item for item, for the base model and a LoRA
adapter served by name; the LLM client caches them (a re-run sends the server nothing); a server the stage starts
itself is waited for and stopped; a missing server is one clear line."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import pytest
import yaml

from counseltune.cli import main
from counseltune.config import load_params
from counseltune.llm.serve import start_server, stop_server
from counseltune.llm.serve_models import ServedModels
from counseltune.predict import predict
from counseltune.predict_served import ServedPredictError, predict_served
from counseltune.schemas.tables import Predictions
from counseltune.tables.io import read_table
from tests.conftest import REPO
from tests.llm.fake_openai import FakeOpenAI
from tests.test_predict import SMOLLM, make_params, write_processed

FINETUNED = f"{SMOLLM}-finetuned"


def conversation(name: str, n: int) -> list[tuple[str, str]]:
    client = ["I can't sleep before exams.", "My parents keep asking about my grades.", "I feel alone at school.",
              "Maybe I should just give up.", "I don't know who to talk to."]
    counselor = ["That sounds exhausting.", "What goes through your mind at night?", "Tell me more about that.",
                 "You have carried a lot.", "Who helped you last time?"]
    return [("client", f"{client[i // 2 % 5]} ({name})") if i % 2 == 0 else ("counselor", counselor[i // 2 % 5])
            for i in range(n)]


@pytest.fixture(scope="module")
def smollm_dir(base_model_dir) -> Path:
    return base_model_dir(SMOLLM)


@pytest.fixture(scope="module")
def adapter_dir(smollm_dir, tmp_path_factory) -> Path:
    """A random (not zero-initialised) LoRA adapter: it changes the replies."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    lora = LoraConfig(r=2, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                      task_type="CAUSAL_LM")
    out = tmp_path_factory.mktemp("adapter")
    get_peft_model(AutoModelForCausalLM.from_pretrained(smollm_dir), lora).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def processed(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("processed")  # 5 items; dialog b's later histories are cut to the prompt cap
    return write_processed(folder, [("toy:a", "toy", conversation("a", 2)), ("toy:b", "toy", conversation("b", 8))])


@pytest.fixture(scope="module")
def server(smollm_dir, adapter_dir):
    """`counseltune serve --base <smollm> --name <smollm> --adapter <smollm>-finetuned=<adapter>`, in a thread."""
    entry = load_params(REPO / "params.yaml")["models"][SMOLLM]  # loaded as the predict stage loads it
    httpd = start_server(ServedModels(smollm_dir, SMOLLM, {FINETUNED: adapter_dir}, batch_size=4, entry=entry))
    yield httpd
    stop_server(httpd)


def served_params(params: dict, cache_dir: Path, *, base_url: str | None = None, start: bool = False, **served) -> dict:
    # 8 new tokens, a 64-token prompt cap (dialog b is cut), the registry's repetition penalty (1.1)
    p = make_params(params, max_new_tokens=8, batch_size=4, prompt_tokens=64)
    p["predict"] |= {"engine": "served", "served": {
        "start": start, "base_url": base_url, "key_env": None, "concurrency": 4, "timeout_s": 300, "max_retries": 0,
        "health_timeout_s": 300, "cache_dir": str(cache_dir), **served}}
    return p


@pytest.fixture(scope="module")
def in_process(smollm_dir, adapter_dir, processed, tmp_path_factory) -> dict[str, tuple[pl.DataFrame, dict]]:
    """variant -> the in-process predictions (predict.predict, engine in_process) and their stats."""
    out, folder = {}, tmp_path_factory.mktemp("in-process")
    p = served_params(load_params(REPO / "params.yaml"), folder / "unused")
    for variant, adapter in (("base", None), ("finetuned", adapter_dir)):
        stats = predict(p, SMOLLM, variant, smollm_dir, adapter, processed, folder / f"{variant}.parquet",
                        progress=False)
        out[variant] = (read_table(folder / f"{variant}.parquet", Predictions), stats)
    return out


@pytest.mark.parametrize("variant", ["base", "finetuned"])
def test_served_greedy_predictions_equal_in_process_ones_item_for_item(tmp_path, params, smollm_dir, adapter_dir,
                                                                       processed, server, in_process, variant):
    p = served_params(params, tmp_path / "cache", base_url=server.url)
    assert p["models"][SMOLLM]["decode"]["repetition_penalty"] != 1.0  # the served path must carry it
    expected, local = in_process[variant]

    served = predict_served(p, SMOLLM, variant, smollm_dir, adapter_dir if variant == "finetuned" else None,
                            processed, tmp_path / "served.parquet")

    assert len(expected) == local["items"] == served["items"] == 5
    assert read_table(tmp_path / "served.parquet", Predictions).to_dicts() == expected.to_dicts()
    assert served["truncated_prompts"] == local["truncated_prompts"] > 0, "a cut history must be cut alike"
    assert served["served_model"] == (SMOLLM if variant == "base" else FINETUNED)
    assert served["prompt_token_mismatches"] == 0 and served["usage"]["requests"] == 5


def test_the_adapter_is_served_by_name(in_process):
    assert in_process["base"][0]["hypothesis"].to_list() != in_process["finetuned"][0]["hypothesis"].to_list()


def test_a_rerun_is_answered_from_the_cache_and_sends_the_server_nothing(tmp_path, params, smollm_dir, processed,
                                                                         server):
    p = served_params(params, tmp_path / "cache", base_url=server.url)
    before = server.models.completions
    first = predict_served(p, SMOLLM, "base", smollm_dir, None, processed, tmp_path / "1.parquet")
    sent = server.models.completions - before
    second = predict_served(p, SMOLLM, "base", smollm_dir, None, processed, tmp_path / "2.parquet")

    assert sent == first["items"] == 5 and first["usage"]["cache_hits"] == 0
    assert server.models.completions - before == sent, "the re-run sent requests"
    assert second["usage"]["requests"] == 0 and second["usage"]["cache_hits"] == 5
    assert pl.read_parquet(tmp_path / "1.parquet").equals(pl.read_parquet(tmp_path / "2.parquet"))


def test_the_cli_predicts_through_the_server_the_params_choose(tmp_path, params, smollm_dir, adapter_dir, processed,
                                                                server, in_process, capsys):
    p = served_params(params, tmp_path / "cache", base_url=server.url)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(p), encoding="utf-8")
    out = tmp_path / "finetuned.parquet"

    code = main(["predict", "--params", str(params_file), "--model", SMOLLM, "--variant", "finetuned",
                 "--base", str(smollm_dir), "--adapter", str(adapter_dir), "--processed", str(processed),
                 "--out", str(out)])

    assert code == 0, capsys.readouterr().err
    assert read_table(out, Predictions).to_dicts() == in_process["finetuned"][0].to_dicts()


@pytest.mark.slow  # a server process loads torch and the model
def test_the_stage_starts_its_own_server_and_stops_it(tmp_path, params, smollm_dir, processed, in_process,
                                                      monkeypatch):
    from counseltune.llm import serve_process

    started, processes = [], []
    real = serve_process.running_server

    @contextmanager
    def spy(command, url, **kwargs):
        started.append(url)
        with real(command, url, **kwargs) as process:
            processes.append(process)
            yield process

    monkeypatch.setattr(serve_process, "running_server", spy)
    p = served_params(params, tmp_path / "cache", start=True)
    stats = predict_served(p, SMOLLM, "base", smollm_dir, None, processed, tmp_path / "served.parquet")

    assert len(started) == 1 and stats["base_url"] == started[0]
    assert read_table(tmp_path / "served.parquet", Predictions).to_dicts() == in_process["base"][0].to_dicts()
    assert processes[0].returncode == 0, "the server was killed, not stopped cleanly by SIGTERM"
    with pytest.raises(OSError):  # stopped: nothing answers there any more
        urllib.request.urlopen(started[0].removesuffix("/v1") + "/health", timeout=5)
    predict_served(p, SMOLLM, "base", smollm_dir, None, processed, tmp_path / "again.parquet")
    assert len(started) == 1, "a fully cached re-run must not start a server"


def test_no_server_at_the_configured_url_is_one_clear_line(tmp_path, params, smollm_dir, processed, capsys):
    from counseltune.llm.serve_process import free_port

    p = served_params(params, tmp_path / "cache", base_url=f"http://127.0.0.1:{free_port()}/v1", health_timeout_s=1)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(p), encoding="utf-8")

    code = main(["predict", "--params", str(params_file), "--model", SMOLLM, "--variant", "base", "--base",
                 str(smollm_dir), "--processed", str(processed), "--out", str(tmp_path / "out.parquet")])

    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]  # the rest is the client's progress bar
    assert code == 1 and len(errors) == 1 and "Traceback" not in err, err
    assert errors[0].startswith("counseltune predict: error: no healthy model server at http://127.0.0.1:")
    assert "/health after 1 s" in errors[0]
    assert not (tmp_path / "out.parquet").exists()


def test_failed_and_empty_replies_are_counted_not_lost(tmp_path, params, smollm_dir, processed):
    with FakeOpenAI(faults=["500", "empty_content"]) as fake:  # then "reply to: <last message>"
        stats = predict_served(served_params(params, tmp_path / "cache", base_url=fake.url), SMOLLM, "base",
                               smollm_dir, None, processed, tmp_path / "out.parquet")
    table = read_table(tmp_path / "out.parquet", Predictions)

    assert stats["skipped_by_reason"] == {"served_http_5xx": 1} and stats["empty_replies"] == 1
    assert stats["items"] == len(table) == 4 and table["hypothesis"].to_list().count("") == 1
    assert all(h.startswith("reply to: ") for h in table["hypothesis"] if h)


def test_a_server_that_answers_nothing_is_one_clear_line(tmp_path, params, smollm_dir, processed):
    with FakeOpenAI(default="500") as fake, pytest.raises(ServedPredictError) as caught:
        predict_served(served_params(params, tmp_path / "cache", base_url=fake.url), SMOLLM, "base", smollm_dir, None,
                       processed, tmp_path / "out.parquet")
    message = str(caught.value)
    assert "\n" not in message and fake.url in message and "answered none of 5 requests" in message
    assert "'served_http_5xx': 5" in message and not (tmp_path / "out.parquet").exists()


@pytest.mark.slow  # a server process loads torch and the model
def test_serve_then_runs_the_command_against_a_healthy_server_and_passes_its_exit_code(smollm_dir, adapter_dir):
    probe = ("import json, os, sys, urllib.request; url = os.environ['COUNSELTUNE_SERVED_URL']; "
             "models = json.load(urllib.request.urlopen(url + '/models'))['data']; "
             "print(sorted(m['id'] for m in models)); sys.exit(7)")
    done = subprocess.run([sys.executable, "-m", "counseltune.cli", "serve", "--base", str(smollm_dir), "--name", SMOLLM,
                           "--adapter", f"{FINETUNED}={adapter_dir}", "--port", "0",
                           "--then", f"{sys.executable} -c \"{probe}\""],
                          capture_output=True, text=True, timeout=600)

    assert done.returncode == 7, done.stderr
    assert str(sorted([SMOLLM, FINETUNED])) in done.stdout
