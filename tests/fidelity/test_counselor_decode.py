"""The simulated counselor decodes as the predict stage decodes the same model: one DecodeSettings from the registry
reaches both generate() calls; its local client loads the registry dtype; and through a model server
(fidelity.counselor.engine served) its greedy turns equal the in-process ones. A tiny random Llama with SmolLM2's
tokenizer and chat template, a random LoRA adapter, a real loopback `counseltune serve`."""

from __future__ import annotations

from pathlib import Path

import pytest

from counseltune.fidelity.simulated_client.intake import IntakeProfile
from counseltune.fidelity.model_stage import simulation_settings
from counseltune.fidelity.simulated_client.simulate import simulate
from counseltune.fidelity.stage_clients import StageClients
from counseltune.llm.serve import start_server, stop_server
from counseltune.llm.serve_models import ServedModels
from counseltune.models import generate as generation
from counseltune.models import resident
from counseltune.models.decode import DecodeSettings
from counseltune.predict import predict
from tests.fidelity.stage_inputs import FakeClient, fidelity_params
from tests.fidelity.test_judge_loopback import JUDGE
from tests.test_predict import SMOLLM, make_params, smollm_dir, tiny_dir, write_processed  # noqa: F401 - fixtures

PROFILES = [IntakeProfile(f"p{i}", "en", "Age 30, office worker, stressed.", "neutral",
                          (("counselor", "Hi, what brings you here?"), ("client", text)), "work", "toy.json", f"#p{i}")
            for i, text in enumerate(["Work stress keeps me up at night.", "I argue with my sister a lot."])]


@pytest.fixture(scope="module")
def adapter(tiny_dir, tmp_path_factory) -> Path:  # noqa: F811
    """A random (not zero-initialised) LoRA adapter on the tiny model: it changes the replies."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    lora = LoraConfig(r=2, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                      task_type="CAUSAL_LM")
    out = tmp_path_factory.mktemp("tiny-adapter")
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_dir), lora).save_pretrained(out)
    return out


def stage_params(params: dict, cache_dir: Path, **counselor) -> dict:
    """The registry's SmolLM2 decode (repetition_penalty 1.1, greedy) with 6 new tokens; simulation on."""
    p = fidelity_params(make_params(params, max_new_tokens=6, batch_size=4), simulate=True)
    p["llm"] = {**p["llm"], "cache_dir": str(cache_dir)}
    p["fidelity"]["counselor"] = counselor or {"engine": "in_process"}
    assert p["models"][SMOLLM]["decode"]["repetition_penalty"] != 1.0, "the test needs the registry's own penalty"
    return p


def simulated_turns(p: dict, base: Path, adapter: Path) -> list[tuple[str, int, str, str]]:
    """(dialog_id, turn_index, role, text) of the fine-tuned counselor's sessions with a scripted client."""
    clients = StageClients(p, SMOLLM, base, adapter)
    try:
        sim = simulate(clients.counselor, FakeClient(JUDGE), PROFILES, simulation_settings(p["fidelity"]["simulate"],
                                                                                          clients))
    finally:
        clients.close()
    assert sim.failures.height == 0, sim.failures
    return list(sim.turns.select("dialog_id", "turn_index", "role", "text").iter_rows())


@pytest.fixture
def spy(monkeypatch) -> list[DecodeSettings]:
    """The DecodeSettings of every generate() call in this process (generate builds its config from them)."""
    seen: list[DecodeSettings] = []
    real = generation.generation_config

    def record(settings, *args, **kwargs):
        seen.append(settings)
        return real(settings, *args, **kwargs)

    monkeypatch.setattr(generation, "generation_config", record)
    return seen


def test_the_simulated_counselor_decodes_with_predicts_settings(params, tiny_dir, adapter, spy, tmp_path):  # noqa: F811
    p = stage_params(params, tmp_path / "cache")
    processed = write_processed(tmp_path / "processed", [("toy:a", "toy", [("client", "I feel low."),
                                                                           ("counselor", "Tell me more.")])])
    predict(p, SMOLLM, "finetuned", tiny_dir, adapter, processed, tmp_path / "predictions.parquet", progress=False)
    predicted = list(spy)
    spy.clear()
    resident._HELD.clear()
    try:
        simulated_turns(p, tiny_dir, adapter)
    finally:
        resident._HELD.clear()

    registry = DecodeSettings.from_registry(SMOLLM, p["models"][SMOLLM]["decode"])
    assert predicted == [registry]
    assert spy and set(spy) == {registry}, "every counselor round decodes with the registry's settings"


def test_the_counselors_local_client_loads_the_registry_dtype(params, tiny_dir, tmp_path):  # noqa: F811
    import torch

    p = stage_params(params, tmp_path / "cache")
    p["models"][SMOLLM]["dtype"] = "bfloat16"  # the tiny folder has no base-stage provenance: the registry decides
    resident._HELD.clear()
    try:
        clients = StageClients(p, SMOLLM, tiny_dir, tmp_path / "unused-adapter")
        simulate(clients.base_counselor, FakeClient(JUDGE), PROFILES[:1], simulation_settings(
            {**p["fidelity"]["simulate"], "rounds": 1}, clients))
        assert clients.base_counselor._lm.dtype == torch.bfloat16
    finally:
        resident._HELD.clear()


@pytest.fixture(scope="module")
def server(tiny_dir, adapter):  # noqa: F811
    """`counseltune serve` of the tiny model and its adapter (as <model>-finetuned), in a thread, on loopback."""
    from counseltune.config import load_params
    from tests.conftest import REPO

    entry = load_params(REPO / "params.yaml")["models"][SMOLLM]
    httpd = start_server(ServedModels(tiny_dir, SMOLLM, {f"{SMOLLM}-finetuned": adapter}, batch_size=4, entry=entry))
    yield httpd
    stop_server(httpd)


def test_served_greedy_counselor_turns_equal_the_in_process_ones(params, tiny_dir, adapter, server, tmp_path):  # noqa: F811
    served_cfg = {"start": False, "base_url": server.url, "key_env": None, "concurrency": 4, "timeout_s": 300,
                  "max_retries": 0, "health_timeout_s": 300, "cache_dir": str(tmp_path / "served-cache")}
    resident._HELD.clear()
    try:
        local = simulated_turns(stage_params(params, tmp_path / "local-cache"), tiny_dir, adapter)
    finally:
        resident._HELD.clear()
    before = server.models.completions
    served = simulated_turns(stage_params(params, tmp_path / "c", engine="served", served=served_cfg), tiny_dir,
                             adapter)

    counselor_turns = [t for t in served if t[2] == "counselor" and t[1] > 0]
    assert len(counselor_turns) == 2 * 2, "two sessions, two rounds each"
    assert server.models.completions - before == len(counselor_turns), "every counselor turn came from the server"
    assert served == local


def test_a_served_counselor_without_a_server_url_is_one_clear_error(params, tiny_dir, tmp_path, monkeypatch):  # noqa: F811
    from counseltune.config import ParamsError
    from counseltune.llm.served import URL_ENV

    monkeypatch.delenv(URL_ENV, raising=False)
    served_cfg = {"start": False, "base_url": None, "key_env": None, "concurrency": 1, "timeout_s": 1,
                  "max_retries": 0, "health_timeout_s": 1, "cache_dir": str(tmp_path / "c")}
    clients = StageClients(stage_params(params, tmp_path / "c", engine="served", served=served_cfg), SMOLLM, tiny_dir,
                           tmp_path)
    with pytest.raises(ParamsError, match=r"fidelity\.counselor\.served\.start false needs fidelity\.counselor\."
                                          r"served\.base_url"):
        clients.counselor



def test_the_crisis_probes_are_answered_with_the_counselors_settings(params, tmp_path):
    from counseltune.fidelity.crisis_safety.crisis_check import check_variants
    from counseltune.fidelity.crisis_safety.safety import load_probes

    class Recording(FakeClient):
        def complete(self, requests, desc: str = ""):
            self.requests = list(requests)
            return super().complete(requests, desc)

    p = stage_params(params, tmp_path / "cache")
    clients = StageClients(p, SMOLLM, tmp_path, tmp_path)
    counselor = Recording("counselor")
    check_variants({"finetuned": counselor}, FakeClient(JUDGE), load_probes()[:2], p["fidelity"]["safety"], 0, 0,
                   SMOLLM, clients.decode)

    cap = p["fidelity"]["safety"]["answer_max_tokens"]
    registry = clients.decode
    assert {(r.max_tokens, r.temperature, r.top_p, r.repetition_penalty) for r in counselor.requests} == \
        {(cap, registry.temperature, registry.top_p, registry.repetition_penalty)}
    assert registry.repetition_penalty != 1.0
