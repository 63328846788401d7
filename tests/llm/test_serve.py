"""`counseltune serve` over real loopback HTTP, on a tiny random Llama with SmolLM2's tokenizer: replies are
predict's generation (batched or alone), requests it cannot serve are OpenAI-style errors, /health says when it
is ready; and the start/wait/stop helper: a server that exits or never becomes healthy is one clear line."""

from __future__ import annotations

import json
import sys
import threading
import urllib.error
import urllib.request

import pytest

from counseltune.cli import main
from counseltune.llm.serve import ServeHTTP, start_server, stop_server
from counseltune.llm.serve_models import ServedModels, ServeError
from counseltune.llm.serve_process import (
    ServerNotHealthy,
    free_port,
    health_url,
    running_server,
    wait_for_health,
)
from counseltune.models.decode import DecodeSettings
from counseltune.models.generate import generate, hypothesis_text, render
from counseltune.predict import load_model
from tests.test_predict import smollm_dir, tiny_dir  # noqa: F401 - fixtures

NAME, ADAPTER = "tiny", "tiny-finetuned"


@pytest.fixture(scope="module")
def tiny_adapter(tiny_dir, tmp_path_factory):  # noqa: F811
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    lora = LoraConfig(r=2, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                      task_type="CAUSAL_LM")
    out = tmp_path_factory.mktemp("tiny-adapter")
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_dir), lora).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def server(tiny_dir, tiny_adapter):  # noqa: F811
    httpd = start_server(ServedModels(tiny_dir, NAME, {ADAPTER: tiny_adapter}, batch_size=4))
    yield httpd
    stop_server(httpd)


def call(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def chat(model: str, text: str, **extra) -> dict:
    return {"model": model, "messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": text}],
            "max_tokens": 6, "temperature": 0.0, **extra}


def expected_reply(folder, adapter, text: str, repetition_penalty: float = 1.0) -> tuple[str, int, int]:
    """predict's own generation of one prompt, alone: (reply, prompt tokens, new tokens)."""
    lm, tok = load_model(folder, "finetuned" if adapter else "base", adapter, {"dtype": "float32", "quantization": "none"})
    _, ids = render(chat(NAME, text)["messages"], tok)
    decode = DecodeSettings(max_new_tokens=6, temperature=0.0, top_p=1.0, repetition_penalty=repetition_penalty,
                            batch_size=1)
    (new,), _ = generate(lm, tok, [ids], decode, 0, progress=False)
    return hypothesis_text(tok, new), len(ids), len(new)


def test_concurrent_replies_are_batched_and_equal_predicts_generation_alone(server, tiny_dir, tiny_adapter):  # noqa: F811
    texts = ["I can't sleep.", "My exams start tomorrow and I am scared.", "Hi.", "Nobody listens to me at home."]
    jobs = [(model, text) for model in (NAME, ADAPTER) for text in texts]
    answers: dict[tuple[str, str], dict] = {}

    def ask(model, text):
        answers[model, text] = call(f"{server.url}/chat/completions", chat(model, text, repetition_penalty=1.3))[1]

    threads = [threading.Thread(target=ask, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    for model, text in jobs:
        reply, prompt_tokens, new_tokens = expected_reply(tiny_dir, tiny_adapter if model == ADAPTER else None, text,
                                                          repetition_penalty=1.3)
        body = answers[model, text]
        assert body["model"] == model and body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"] == reply, (model, text)
        assert body["usage"] == {"prompt_tokens": prompt_tokens, "completion_tokens": new_tokens,
                                 "total_tokens": prompt_tokens + new_tokens}
        assert body["choices"][0]["finish_reason"] == ("length" if new_tokens == 6 else "stop")
    assert answers[NAME, texts[0]] != answers[ADAPTER, texts[0]]


def test_models_and_health_answer_like_vllm(server):
    status, models = call(f"{server.url}/models")
    assert status == 200
    assert [(m["id"], m["parent"]) for m in models["data"]] == [(NAME, None), (ADAPTER, NAME)]
    status, health = call(health_url(server.url))
    assert status == 200 and health["status"] == "ok"


@pytest.mark.parametrize(("body", "status", "code"), [
    (chat("no-such-model", "hi"), 404, "model_not_found"),
    (chat(NAME, "hi", stream=True), 400, "unsupported"),
    (chat(NAME, "hi", response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}), 400,
     "unsupported"),
    (chat(NAME, "hi", max_tokens=0), 400, "invalid_value"),
    (chat(NAME, "hi", temperature="hot"), 400, "invalid_value"),
    ({"model": NAME, "messages": [{"role": "robot", "content": "hi"}]}, 400, "invalid_messages"),
    (chat(NAME, "word " * 2000), 400, "context_length_exceeded"),
])
def test_what_it_cannot_serve_is_an_openai_error(server, body, status, code):
    got, error = call(f"{server.url}/chat/completions", body)
    assert (got, error["error"]["code"]) == (status, code)
    if "response_format" in body:  # the LLM client falls back to json_object on a 400 naming response_format
        assert "response_format" in error["error"]["message"]


def test_health_is_503_until_the_model_is_loaded(tiny_dir):  # noqa: F811
    httpd = ServeHTTP(("127.0.0.1", 0), ServedModels(tiny_dir, NAME, {}))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        assert call(health_url(httpd.url))[0] == 503
        assert call(f"{httpd.url}/chat/completions", chat(NAME, "hi"))[0] == 503
        with pytest.raises(ServerNotHealthy, match="last: HTTP 503"):
            wait_for_health(httpd.url, timeout_s=0.5)
        httpd.models.load()
        httpd.ready = True
        wait_for_health(httpd.url, timeout_s=5)
    finally:
        stop_server(httpd)


def test_a_server_that_never_becomes_healthy_fails_with_one_line_and_is_stopped(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(ServerNotHealthy) as caught, \
            running_server(["sh", "-c", "echo loading...; exec sleep 600"],
                           url, health_timeout_s=1.0):
        pytest.fail("must not get here")
    message = str(caught.value)
    assert "\n" not in message
    assert f"no healthy model server at http://127.0.0.1:{port}/health after 1 s" in message
    assert "'loading...'" in message  # its last output line


def test_a_server_that_exits_names_its_exit_code_and_last_output():
    with pytest.raises(ServerNotHealthy) as caught, \
            running_server(["sh", "-c", "echo 'error: no GPU'; exit 3"],
                           f"http://127.0.0.1:{free_port()}/v1", health_timeout_s=60):
        pytest.fail("must not get here")
    assert "exited with code 3 before it was healthy" in str(caught.value)
    assert "'error: no GPU'" in str(caught.value) and "\n" not in str(caught.value)


def test_bad_serve_arguments_are_one_line(tiny_dir, tmp_path, capsys):  # noqa: F811
    assert main(["serve", "--base", str(tiny_dir), "--adapter", "no-equals-sign"]) == 1
    assert main(["serve", "--base", str(tiny_dir), "--adapter", f"x={tmp_path}"]) == 1
    assert main(["serve", "--base", str(tmp_path)]) == 1
    assert main(["serve", "--base", str(tiny_dir), "--entry", '{"dtype": "float32"}']) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("counseltune serve: error: ") for line in lines)
    assert "NAME=PATH" in lines[0] and "adapter_config.json" in lines[1] and "not a model folder" in lines[2]
    assert "--entry must be a registry entry" in lines[3]
    with pytest.raises(ServeError, match="base model's name"):
        ServedModels(tiny_dir, NAME, {NAME: tmp_path})
