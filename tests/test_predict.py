"""Counselor-reply prediction: prompts hold only the history, limits and choice are deterministic, batching
with left padding changes nothing, the adapter is applied, and the output keeps its contract and order."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import polars as pl
import pytest

from counseltune.models.decode import DecodeSettings
from counseltune.models.generate import generate, render, stop_token_ids
from counseltune.predict import load_model, predict, render_prompts, seeded_hash, select_items
from counseltune.schemas.tables import CuratedDialogs, Predictions, Turns
from counseltune.tables.io import read_table, write_table
from tests.conftest import dialog_rows, frames

SMOLLM = "smollm2-135m-instruct"


# ------------------------------------------------------------------------------------------------ helpers


def write_processed(folder: Path, dialogs: list[tuple[str, str, list[tuple[str, str]]]], split: str = "test",
                    language: str = "en", shuffle: int | None = None) -> Path:
    """(dialog_id, source, turns) -> a data/processed-like folder with valid CuratedDialogs and Turns tables."""
    d, t = frames(*(dialog_rows(did, turns, source=src) for did, src, turns in dialogs))
    d = d.with_columns(pl.lit(split).alias("split"), pl.lit(language).alias("language"))
    if shuffle is not None:  # the same tables in another row order
        d, t = d.sample(fraction=1.0, shuffle=True, seed=shuffle), t.sample(fraction=1.0, shuffle=True, seed=shuffle)
    folder.mkdir(parents=True, exist_ok=True)
    write_table(d, folder / "dialogs.parquet", CuratedDialogs)
    write_table(t, folder / "turns.parquet", Turns)
    return folder


def alternating(dialog: str, n: int, first: str = "client") -> list[tuple[str, str]]:
    """n turns alternating client/counselor, each text unique (no text is a substring of another)."""
    other = {"client": "counselor", "counselor": "client"}
    roles = [first]
    while len(roles) < n:
        roles.append(other[roles[-1]])
    return [(role, f"<{dialog} turn {i:02d} by {role}>") for i, role in enumerate(roles)]


def make_params(params: dict, *, dialogs=None, turns=None, max_new_tokens=4, batch_size=8, temperature=0.0,
                seed=7, split="test", prompt_tokens=None) -> dict:
    p = copy.deepcopy(params)
    p["predict"] = {"split": split, "max_dialogs_per_source": dialogs, "max_turns_per_dialog": turns,
                    "max_prompt_tokens": prompt_tokens}
    p["predict"]["seed"] = seed
    p["models"][SMOLLM]["decode"] |= {"max_new_tokens": max_new_tokens, "batch_size": batch_size,
                                      "temperature": temperature}
    return p


@pytest.fixture(scope="session")
def smollm_dir(base_model_dir) -> Path:
    return base_model_dir(SMOLLM)


@pytest.fixture(scope="session")
def tokenizer(smollm_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm_dir)


@pytest.fixture(scope="session")
def tiny_dir(smollm_dir, tmp_path_factory) -> Path:
    """A 2-layer random Llama with SmolLM2's real tokenizer and chat template: fast logic tests."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    real = AutoConfig.from_pretrained(smollm_dir)
    config = LlamaConfig(vocab_size=real.vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=real.bos_token_id, eos_token_id=real.eos_token_id,
                         pad_token_id=real.pad_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=real.eos_token_id, pad_token_id=real.pad_token_id)
    out = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(smollm_dir).save_pretrained(out)
    return out


# ------------------------------------------------------------------------------------------------ prompts


def test_prompt_holds_only_the_history_before_its_counselor_turn(tmp_path, params, tokenizer):
    turns = alternating("d1", 8)
    processed = write_processed(tmp_path, [("toy:d1", "toy", turns)])
    items, _ = select_items(make_params(params), processed)
    prompts, skipped = render_prompts(items, tokenizer, max_tokens=4096)

    assert [p.item.turn_index for p in prompts] == [1, 3, 5, 7] and not skipped
    for p in prompts:
        i = p.item.turn_index
        assert p.item.reference == turns[i][1]
        assert all(text in p.text for _, text in turns[:i])
        assert not any(text in p.text for _, text in turns[i:]), f"turn {i}: the reference or a later turn leaked"
        assert p.text.endswith("<|im_start|>assistant\n")
        assert p.ids == tokenizer(p.text, add_special_tokens=False)["input_ids"] and not p.truncated


def test_roles_map_to_user_and_assistant(tmp_path, params, tokenizer):
    processed = write_processed(tmp_path, [("toy:d1", "toy", alternating("d1", 4))])
    items, _ = select_items(make_params(params), processed)
    last = render_prompts(items, tokenizer, 4096)[0][-1]

    assert "<|im_start|>user\n<d1 turn 00 by client>" in last.text
    assert "<|im_start|>assistant\n<d1 turn 01 by counselor>" in last.text


def test_opening_counselor_turn_is_skipped_and_not_counted_against_the_turn_limit(tmp_path, params):
    processed = write_processed(tmp_path, [("kmi:d1", "kmi", alternating("d1", 6, first="counselor"))])
    items, skipped = select_items(make_params(params, turns=2), processed)

    assert [i.turn_index for i in items] == [2, 4]
    assert skipped == {"no_history": 1}


def test_template_that_refuses_assistant_first_skips_those_items(tmp_path, params, tokenizer):
    strict = copy.deepcopy(tokenizer)
    strict.chat_template = (
        "{% if messages[0]['role'] != 'user' %}{{ raise_exception('must start with user') }}{% endif %}"
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "<|im_start|>assistant\n")
    processed = write_processed(tmp_path, [("kmi:d1", "kmi", alternating("d1", 5, first="counselor")),
                                           ("toy:d2", "toy", alternating("d2", 4))])
    items, _ = select_items(make_params(params), processed)

    prompts, skipped = render_prompts(items, strict, 4096)

    assert [(p.item.dialog_id, p.item.turn_index) for p in prompts] == [("toy:d2", 1), ("toy:d2", 3)]
    assert skipped == {"template_error": 2}


def test_long_history_is_cut_from_the_left_at_turn_boundaries(tmp_path, params, tokenizer):
    turns = alternating("d1", 12)
    processed = write_processed(tmp_path, [("toy:d1", "toy", turns)])
    item = select_items(make_params(params), processed)[0][-1]  # turn 11, 11 turns of history
    full = render_prompts([item], tokenizer, 4096)[0][0]
    cap = len(full.ids) - 10

    (cut,), skipped = render_prompts([item], tokenizer, cap)

    assert cut.truncated and len(cut.ids) <= cap and not skipped
    messages = [{"role": {"client": "user", "counselor": "assistant"}[r], "content": t} for r, t in item.history]
    kept = [k for k in range(1, len(messages)) if render(messages[k:], tokenizer)[0] == cut.text]
    assert kept == [1], "the prompt should be the history minus exactly its oldest turn"
    assert turns[0][1] not in cut.text and turns[10][1] in cut.text


def test_prompt_that_cannot_fit_even_one_turn_is_skipped(tmp_path, params, tokenizer):
    processed = write_processed(tmp_path, [("toy:d1", "toy", alternating("d1", 4))])
    items, _ = select_items(make_params(params), processed)

    prompts, skipped = render_prompts(items, tokenizer, max_tokens=5)

    assert prompts == [] and skipped == {"prompt_too_long": 2}


# ------------------------------------------------------------------------------------------------ choice


def many_dialogs(sources=("alpha", "beta"), per_source=6, n_turns=9):
    return [(f"{s}:d{k}", s, alternating(f"{s}{k}", n_turns)) for s in sources for k in range(per_source)]


def test_limits_cap_dialogs_per_source_and_counselor_turns_per_dialog(tmp_path, params):
    processed = write_processed(tmp_path, many_dialogs())
    items, skipped = select_items(make_params(params, dialogs=2, turns=3), processed)

    per_source = {s: {i.dialog_id for i in items if i.source == s} for s in ("alpha", "beta")}
    assert {s: len(ids) for s, ids in per_source.items()} == {"alpha": 2, "beta": 2}
    for dialog_id in per_source["alpha"] | per_source["beta"]:
        assert [i.turn_index for i in items if i.dialog_id == dialog_id] == [1, 3, 5]  # the first three
    assert len(items) == 12 and not skipped

    everything, _ = select_items(make_params(params, dialogs=None, turns=None), processed)
    assert len(everything) == 2 * 6 * 4


def test_dialog_choice_is_seeded_and_independent_of_row_order(tmp_path, params):
    a = write_processed(tmp_path / "a", many_dialogs())
    b = write_processed(tmp_path / "b", many_dialogs(), shuffle=3)

    def chosen(folder, seed):
        items, _ = select_items(make_params(params, dialogs=2, turns=1, seed=seed), folder)
        return [i.dialog_id for i in items]

    assert chosen(a, 7) == chosen(a, 7) == chosen(b, 7)
    expected = sorted(d for s in ("alpha", "beta")
                      for d in sorted((f"{s}:d{k}" for k in range(6)), key=lambda d: seeded_hash(d, 7))[:2])
    assert chosen(a, 7) == expected
    assert any(chosen(a, seed) != chosen(a, 7) for seed in (1, 2, 3))


def test_only_the_configured_split_is_predicted(tmp_path, params):
    processed = write_processed(tmp_path, many_dialogs(per_source=2), split="train")

    assert select_items(make_params(params, split="test"), processed)[0] == []
    assert len(select_items(make_params(params, split="train", turns=1), processed)[0]) == 4


# ------------------------------------------------------------------------------------------------ generation


def test_stop_tokens_are_the_templates_end_of_turn(smollm_dir, tokenizer):
    from transformers import AutoConfig, GenerationConfig

    class Stub:  # stop_token_ids reads only generation_config and config
        generation_config = GenerationConfig(eos_token_id=2)
        config = AutoConfig.from_pretrained(smollm_dir)

    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert stop_token_ids(Stub(), tokenizer) == [im_end]  # <end_of_turn> is not in this vocabulary: not added

    gemma = copy.deepcopy(tokenizer)
    gemma.add_tokens(["<end_of_turn>"], special_tokens=True)
    gemma.chat_template = "{% for m in messages %}<start_of_turn>{{ m['content'] }}<end_of_turn>\n{% endfor %}"
    assert gemma.convert_tokens_to_ids("<end_of_turn>") in stop_token_ids(Stub(), gemma)


def test_batching_matches_one_at_a_time_on_a_sliding_window_model(tokenizer):
    """Gemma 3 mixes sliding-window and global layers: the static CPU cache must handle both under left padding."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, GenerationConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=8,
                              layer_types=["sliding_attention", "full_attention"], max_position_embeddings=256,
                              pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    model = Gemma3ForCausalLM(config).eval()
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id)
    tok = copy.deepcopy(tokenizer)
    tok.padding_side = "left"
    prompts = [torch.randint(3, 1000, (n,)).tolist() for n in (30, 12, 21, 5)]  # longer and shorter than the window
    decode = DecodeSettings(max_new_tokens=6, temperature=0.0, top_p=1.0, repetition_penalty=1.1)

    batched, _ = generate(model, tok, prompts, decode.with_request(batch_size=4), seed=0, progress=False)
    alone, _ = generate(model, tok, prompts, decode.with_request(batch_size=1), seed=0, progress=False)

    assert batched == alone


def test_predictions_validate_and_keep_item_order_after_length_sorting(tmp_path, params, tiny_dir):
    rng = random.Random(0)
    dialogs = [(f"toy:d{k}", "toy", [(r, t + " more" * rng.randrange(0, 30)) for r, t in alternating(f"d{k}", 6)])
               for k in range(3)]
    processed = write_processed(tmp_path / "processed", dialogs)
    p = make_params(params, max_new_tokens=4, batch_size=4)
    out = tmp_path / "predictions" / SMOLLM / "base.parquet"

    stats = predict(p, SMOLLM, "base", tiny_dir, None, processed, out, progress=False)

    table = read_table(out, Predictions)
    items, _ = select_items(p, processed)
    assert table.select("dialog_id", "turn_index").rows() == [(i.dialog_id, i.turn_index) for i in items]
    assert table["reference"].to_list() == [i.reference for i in items]
    lengths = table["prompt_tokens"].to_list()
    assert lengths != sorted(lengths) and lengths != sorted(lengths, reverse=True), "test needs unsorted lengths"
    assert table["new_tokens"].max() <= 4 and set(table["variant"]) == {"base"} and set(table["model"]) == {SMOLLM}
    assert stats["items"] == 9 and stats["skipped"] == 0 and stats["batches"] == 3
    assert stats["tokens_generated"] == table["new_tokens"].sum() and stats["prompt_tokens"] == sum(lengths)
    assert not list(out.parent.glob(".*tmp*")), "the write must be atomic (no temporary file left)"


def test_predict_max_prompt_tokens_caps_every_prompt(tmp_path, params, tiny_dir):
    processed = write_processed(tmp_path / "processed", [("toy:d1", "toy", alternating("d1", 10))])
    out = tmp_path / "base.parquet"

    stats = predict(make_params(params, prompt_tokens=80), SMOLLM, "base", tiny_dir, None, processed, out,
                    progress=False)

    table = read_table(out, Predictions)
    assert stats["prompt_token_cap"] == 80 and table["prompt_tokens"].max() <= 80
    assert stats["items"] == 5 and stats["truncated_prompts"] == 3  # turns 1 and 3 fit whole (40, 71 tokens)


def test_sampled_replies_are_reproducible_with_the_seed(tmp_path, params, tiny_dir):
    processed = write_processed(tmp_path / "processed", many_dialogs(sources=("toy",), per_source=2, n_turns=4))
    p = make_params(params, max_new_tokens=4, temperature=1.0)

    def run(name):
        predict(p, SMOLLM, "base", tiny_dir, None, processed, tmp_path / name, progress=False)
        return pl.read_parquet(tmp_path / name)["hypothesis"].to_list()

    assert run("a.parquet") == run("b.parquet")


def test_a_split_without_dialogs_writes_an_empty_valid_table(tmp_path, params, tiny_dir):
    processed = write_processed(tmp_path / "processed", many_dialogs(per_source=1), split="train")
    out = tmp_path / "base.parquet"

    stats = predict(make_params(params), SMOLLM, "base", tiny_dir, None, processed, out, progress=False)

    assert read_table(out, Predictions).is_empty()
    assert stats["items"] == 0 and stats["tokens_generated"] == 0 and stats["batches"] == 0


def test_finetuned_variant_without_an_adapter_fails_clearly(tmp_path, params, tiny_dir):
    processed = write_processed(tmp_path / "processed", many_dialogs(sources=("toy",), per_source=1, n_turns=2))

    with pytest.raises(FileNotFoundError, match="adapter"):
        predict(make_params(params), SMOLLM, "finetuned", tiny_dir, None, processed, tmp_path / "x.parquet")


@pytest.mark.slow
def test_batched_left_padded_greedy_decoding_matches_one_at_a_time(smollm_dir, params):
    model, tok = load_model(smollm_dir, "base", None, params["models"][SMOLLM])
    histories = [
        [{"role": "user", "content": "I can't sleep."}],
        [{"role": "user", "content": "Work has been very stressful lately and I feel tired all the time."}],
        [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello! How are you feeling today?"},
         {"role": "user", "content": "Not great, honestly. My exams are next week."}],
        [{"role": "user", "content": "My mother and I keep arguing about my future."}],
    ]
    prompts = [render(h, tok)[1] for h in histories]
    assert len({len(p) for p in prompts}) == 4, "the prompts must differ in length so the batch is padded"
    decode = DecodeSettings(max_new_tokens=8, temperature=0.0, top_p=1.0, repetition_penalty=1.1)

    batched, stats = generate(model, tok, prompts, decode.with_request(batch_size=4), seed=0, progress=False)
    alone, _ = generate(model, tok, prompts, decode.with_request(batch_size=1), seed=0, progress=False)

    assert stats["prompt_padding_share"] > 0
    assert batched == alone
    assert all(0 < len(new) <= 8 for new in batched)


@pytest.mark.slow
def test_finetuned_variant_loads_the_adapter_and_changes_the_replies(tmp_path, params, smollm_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    lora = LoraConfig(r=2, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                      task_type="CAUSAL_LM")
    get_peft_model(AutoModelForCausalLM.from_pretrained(smollm_dir), lora).save_pretrained(tmp_path / "adapter")
    processed = write_processed(tmp_path / "processed", [
        ("toy:a", "toy", [("client", "I can't sleep before exams."), ("counselor", "That sounds hard.")]),
        ("toy:b", "toy", [("client", "I feel lonely at my new school."), ("counselor", "Tell me more.")]),
    ])
    p = make_params(params, max_new_tokens=8)

    base = predict(p, SMOLLM, "base", smollm_dir, None, processed, tmp_path / "base.parquet", progress=False)
    tuned = predict(p, SMOLLM, "finetuned", smollm_dir, tmp_path / "adapter", processed, tmp_path / "ft.parquet",
                    progress=False)

    a, b = read_table(tmp_path / "base.parquet", Predictions), read_table(tmp_path / "ft.parquet", Predictions)
    assert base["items"] == tuned["items"] == 2 and set(b["variant"]) == {"finetuned"}
    assert a["prompt_tokens"].to_list() == b["prompt_tokens"].to_list(), "both variants must see the same prompts"
    assert a["hypothesis"].to_list() != b["hypothesis"].to_list()


def test_a_custom_code_base_loads_for_both_variants_through_the_shared_loader(tmp_path):
    """Baichuan2 is custom code: predict loads its base folder (and the adapter on top) with trust_remote_code."""
    from peft import LoraConfig, get_peft_model

    from tests.models import tiny_study_base

    entry, base = tiny_study_base("baichuan2-7b-chat", tmp_path)
    model, tokenizer = load_model(base, "base", None, entry)
    assert type(model).__name__ == "BaichuanForCausalLM" and tokenizer.padding_side == "left"
    lora = LoraConfig(r=4, target_modules=list(entry["lora"]["target_modules"]), init_lora_weights=False,
                      task_type="CAUSAL_LM")
    get_peft_model(model, lora).save_pretrained(tmp_path / "adapter")
    tuned, _ = load_model(base, "finetuned", tmp_path / "adapter", entry)
    assert type(tuned).__name__ == "BaichuanForCausalLM" and not hasattr(tuned, "peft_config")  # merged
