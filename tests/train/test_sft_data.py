"""SFT rendering and the sft-data stage: loss only on counselor text, templates, windows, determinism."""

from __future__ import annotations

import copy
import json
import time

import datasets
import polars as pl
import pytest

from counseltune.train.render import IGNORE, RenderError, RenderReport, render_dialog, template_caps
from counseltune.train.sft_data import build_dataset, build_sft_data, save_dataset, select_dialogs
from tests.conftest import dialog_rows, frames
from tests.train import STRICT_TEMPLATE, load_tokenizer, loss_runs, turns

SMOL = "smollm2-135m-instruct"
END = "<|im_end|>"

SESSION = turns(
    ("client", "I keep lying awake at night worrying about my exams."),
    ("counselor", "It sounds like the exams are weighing on you a lot."),
    ("client", "Yes, my parents expect top grades."),
    ("counselor", "What would it mean to you to fall short of that?"),
    ("client", "That I disappointed everyone."),
    ("counselor", "So their approval matters deeply to you."),
)
CLIENT_WORDS = ["lying", "parents", "disappointed"]


@pytest.fixture(scope="module")
def smol_dir(base_model_dir):
    return base_model_dir(SMOL)


@pytest.fixture(scope="module")
def tok(smol_dir):
    return load_tokenizer(smol_dir)


@pytest.fixture(scope="module")
def strict_tok(smol_dir):
    return load_tokenizer(smol_dir, STRICT_TEMPLATE)


def counselor_texts(ts: list[dict]) -> list[str]:
    return [t["text"] for t in ts if t["role"] == "counselor"]


def test_labels_cover_exactly_the_counselor_texts_and_end_marker(tok):
    report = RenderReport()
    (sample,) = render_dialog(tok, SESSION, max_len=1024, report=report)
    assert loss_runs(tok, sample) == [text + END for text in counselor_texts(SESSION)]
    assert report.spans_prefix == 3 and report.spans_offsets == 0


def test_client_text_never_carries_loss(tok):
    (sample,) = render_dialog(tok, SESSION, max_len=1024)
    loss_text = "".join(loss_runs(tok, sample))
    assert not any(word in loss_text for word in CLIENT_WORDS)
    assert all(word in tok.decode(sample.input_ids) for word in CLIENT_WORDS)  # the client is context
    assert sample.labels[0] == IGNORE


def test_assistant_first_dialog_trains_the_opener_under_chatml(tok):
    ts = turns(("counselor", "Hi, thanks for coming in today.")) + SESSION
    (sample,) = render_dialog(tok, ts, max_len=1024)
    assert template_caps(tok).assistant_first
    assert loss_runs(tok, sample) == [text + END for text in counselor_texts(ts)]


def test_assistant_first_dialog_keeps_the_opener_as_context_under_a_strict_template(strict_tok):
    ts = turns(("system", "You are a counselor."), ("counselor", "Hi, thanks for coming in today.")) + SESSION
    report = RenderReport()
    (sample,) = render_dialog(strict_tok, ts, max_len=1024, report=report)
    caps = template_caps(strict_tok)
    assert not caps.assistant_first and not caps.system and not caps.consecutive
    text = strict_tok.decode(sample.input_ids)
    assert "Hi, thanks for coming in today." in text and "You are a counselor." in text
    assert text.startswith("<|im_start|>user\nYou are a counselor.\n\ncounselor: Hi, thanks")
    assert loss_runs(strict_tok, sample) == [t + END for t in counselor_texts(SESSION)]
    assert report.folded_openers == 1


def test_strict_template_merges_consecutive_counselor_turns(strict_tok):
    ts = turns(("client", "Hello."), ("counselor", "Welcome."), ("counselor", "Where shall we start?"))
    (sample,) = render_dialog(strict_tok, ts, max_len=256)
    assert loss_runs(strict_tok, sample) == ["Welcome.\n\nWhere shall we start?" + END]


def test_dialog_without_a_client_turn_is_skipped_under_a_strict_template(strict_tok):
    report = RenderReport()
    assert render_dialog(strict_tok, turns(("counselor", "Hello?")), max_len=256, report=report) == []
    assert report.skipped_dialogs == 1


def test_template_that_rerenders_earlier_turns_falls_back_to_offsets(smol_dir):
    # the header counts all messages, so a prefix renders differently from the same turns in the whole dialog
    counting = ("{{ 'messages: ' + messages|length|string + '\n' }}" + STRICT_TEMPLATE)
    tok = load_tokenizer(smol_dir, counting)
    report = RenderReport()
    (sample,) = render_dialog(tok, SESSION, max_len=1024, report=report)
    assert report.spans_offsets == 3 and report.spans_prefix == 0
    assert loss_runs(tok, sample) == [text + END for text in counselor_texts(SESSION)]


def test_template_that_neither_keeps_prefixes_nor_renders_content_verbatim_raises(smol_dir):
    mangling = ("{{ 'messages: ' + messages|length|string + '\n' }}{% for m in messages %}"
                "{{ '<|im_start|>' + m['role'] + '\n' + (m['content']|upper if loop.index0 > 4 else m['content'])"
                " + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
    tok = load_tokenizer(smol_dir, mangling)
    with pytest.raises(RenderError, match="verbatim"):
        render_dialog(tok, SESSION, max_len=1024)


LONG = turns(*[
    ("client", f"我最近总是睡不好，脑子里一直在想工作上的事情，这是第{i}次说到它。") if i % 2 == 0
    else ("counselor", f"听起来这件事让你压力很大，我们能再多谈谈第{i}件事吗？")
    for i in range(16)
])


@pytest.mark.parametrize("name", ["chatml", "gemma", "baichuan2"])
def test_project_templates_train_exactly_the_counselor_turns(smol_dir, name):
    templates = pytest.importorskip("counseltune.models.templates")
    tok = load_tokenizer(smol_dir, templates.get_template(name).jinja)
    ts = turns(("system", "You are a counselor."), ("counselor", "Hi, thanks for coming in today.")) + SESSION
    (sample,) = render_dialog(tok, ts, max_len=1024)
    end = template_caps(tok).end_marker
    assert end in {"<|im_end|>", "<end_of_turn>"}
    assert loss_runs(tok, sample) == [t + end for t in counselor_texts(ts)]
    windows = render_dialog(tok, turns(("system", "Be kind.")) + LONG, max_len=120)
    assert len(windows) > 1 and all(w.n_tokens <= 120 for w in windows)
    assert [run for w in windows for run in loss_runs(tok, w)] == [t + end for t in counselor_texts(LONG)]


def test_long_dialog_is_cut_into_windows_at_turn_starts_each_with_loss(tok):
    report = RenderReport()
    samples = render_dialog(tok, LONG, max_len=96, dialog_id="toy:long", report=report)
    preamble = tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False).split("<|im_start|>user")[0]
    assert len(samples) > 1 and report.windowed_dialogs == 1 and report.windows == len(samples)
    for s in samples:
        assert s.n_tokens <= 96 and s.n_loss_tokens > 0 and s.dialog_id == "toy:long"
        text = tok.decode(s.input_ids)
        assert text.startswith(preamble + "<|im_start|>")  # the template's preamble, then a turn header
    # every counselor turn is trained exactly once, whole, in order
    assert [run for s in samples for run in loss_runs(tok, s)] == [t + END for t in counselor_texts(LONG)]
    assert report.truncated_turns == 0


def test_windows_keep_as_much_preceding_context_as_fits(tok):
    samples = render_dialog(tok, LONG, max_len=160)
    later = samples[-1]
    # beyond the counselor turn and its client turn, earlier turns fill the window (the first one cut, "…")
    assert later.n_tokens > 160 - 40
    assert tok.decode(later.input_ids).count("<|im_start|>") > 3


def test_overlong_counselor_turn_is_cut_and_counted(tok):
    long_reply = "It makes sense that you feel this way. " * 40
    ts = turns(("client", "I feel stuck."), ("counselor", long_reply.strip()), ("client", "Yes."), ("counselor", "Go on."))
    report = RenderReport()
    samples = render_dialog(tok, ts, max_len=64, report=report)
    assert report.truncated_turns == 1
    runs = [loss_runs(tok, s) for s in samples]
    assert all(s.n_tokens <= 64 and s.n_loss_tokens > 0 for s in samples)
    assert long_reply.strip().startswith(runs[0][0]) and END not in runs[0][0]
    assert runs[-1][-1] == "Go on." + END


def test_overlong_client_turn_trims_context_not_the_counselor_turn(tok):
    ts = turns(("client", "I have been thinking about everything that happened. " * 30), ("counselor", "Thank you for telling me."))
    report = RenderReport()
    (sample,) = render_dialog(tok, ts, max_len=64, report=report)
    assert sample.n_tokens <= 64
    assert loss_runs(tok, sample) == ["Thank you for telling me." + END]
    assert report.truncated_turns == 0 and report.trimmed_turns == 1
    assert "<|im_start|>user\n…" in tok.decode(sample.input_ids)


def toy_tables(languages=("zh", "en", "ko")) -> tuple[pl.DataFrame, pl.DataFrame]:
    rows = []
    for i in range(6):
        dialog, ts = dialog_rows(f"toy:{i}", [(t["role"], t["text"]) for t in (SESSION if i % 2 else LONG)])
        dialog["language"] = languages[i % len(languages)]
        dialog["split"] = ["train", "train", "val", "test", "train", "train"][i]
        rows.append((dialog, ts))
    return frames(*rows)


def small_params(params: dict, max_len: int, packing: bool = True) -> dict:
    params = copy.deepcopy(params)
    params["models"][SMOL]["train"] |= {"max_len": max_len, "packing": packing}
    return params


def test_select_dialogs_keeps_languages_and_carves_val_by_hash(params):
    dialogs, _ = toy_tables()
    chosen = select_dialogs(dialogs, params)
    assert chosen == {"train": ["toy:0", "toy:1", "toy:4", "toy:5"], "val": ["toy:2"]}  # toy:3 is test
    params = copy.deepcopy(params)
    params["sft"] |= {"languages": ["zh", "en"], "val_fraction_of_train": 0.5}
    carved = select_dialogs(dialogs, params)
    assert sorted(carved["train"] + carved["val"]) == ["toy:0", "toy:1", "toy:4"]  # no ko (toy:2, toy:5), no test
    assert carved["val"], "half of train should move to val"
    assert carved == select_dialogs(dialogs, params)


def test_same_inputs_and_params_give_the_identical_dataset(tok, params, tmp_path):
    tables = [toy_tables()]
    first, stats1 = build_dataset(tok, tables, small_params(params, 96), SMOL)
    second, stats2 = build_dataset(tok, tables, small_params(params, 96), SMOL)
    for split in ("train", "val"):
        assert first[split].to_dict() == second[split].to_dict()
    assert stats1 == stats2
    save_dataset(first, tmp_path / "a")
    save_dataset(second, tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files and all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)


def test_extra_table_pairs_join_the_curated_ones(tok, params):
    synthetic, ts = dialog_rows("synthetic:1", [("client", "I feel alone."), ("counselor", "That sounds hard.")])
    dataset, _ = build_dataset(tok, [toy_tables(), frames((synthetic, ts))], small_params(params, 96), SMOL)
    assert "synthetic:1" in {i for ids in dataset["train"]["dialog_ids"] for i in ids}  # a null split counts as train
    with pytest.raises(ValueError, match="more than one table"):
        build_dataset(tok, [toy_tables(), toy_tables()], small_params(params, 96), SMOL)


def test_an_empty_split_still_gives_a_dataset(tok, params):
    params = copy.deepcopy(params)
    params["sft"]["languages"] = ["en"]  # the only val dialog (toy:2) is Korean
    dataset, stats = build_dataset(tok, [toy_tables()], small_params(params, 96), SMOL)
    assert len(dataset["val"]) == 0 and stats["samples"]["val"] == 0 and len(dataset["train"]) > 0


def test_an_empty_split_is_left_out_when_saved_so_the_dataset_loads_back(tok, params, tmp_path):
    from datasets import load_from_disk

    from counseltune.train.sft_data import save_dataset

    params = copy.deepcopy(params)
    params["sft"]["languages"] = ["en"]
    dataset, _ = build_dataset(tok, [toy_tables()], small_params(params, 96), SMOL)
    save_dataset(dataset, tmp_path / "sft")
    loaded = load_from_disk(str(tmp_path / "sft"))
    assert list(loaded) == ["train"] and len(loaded["train"]) == len(dataset["train"])


def test_packed_rows_hold_samples_with_restarting_positions(tok, params):
    dataset, stats = build_dataset(tok, [toy_tables()], small_params(params, 96), SMOL)
    train = dataset["train"]
    assert set(train.column_names) == {"input_ids", "labels", "position_ids", "seq_lens", "n_tokens", "n_loss_tokens", "dialog_ids"}
    for row in train:
        assert sum(row["seq_lens"]) == row["n_tokens"] == len(row["input_ids"]) <= 96
        assert len(row["dialog_ids"]) == len(row["seq_lens"])
        starts = [i for i, p in enumerate(row["position_ids"]) if p == 0]
        assert [b - a for a, b in zip(starts, starts[1:] + [row["n_tokens"]])] == row["seq_lens"]
        assert all(row["labels"][i] == IGNORE for i in starts)
        assert row["n_loss_tokens"] == sum(x != IGNORE for x in row["labels"]) > 0
    assert stats["samples"]["train"] >= len(train)


def test_unpacked_rows_are_one_sample_each(tok, params):
    dataset, stats = build_dataset(tok, [toy_tables()], small_params(params, 96, packing=False), SMOL)
    assert "position_ids" not in dataset["train"].column_names
    assert len(dataset["train"]) == stats["samples"]["train"]
    assert all(len(ids) == 1 for ids in dataset["train"]["dialog_ids"])


@pytest.mark.slow
def test_build_sft_data_end_to_end_on_the_processed_sample(smol_dir, params, processed_sample, tmp_path):
    processed = processed_sample
    out, stats_path = tmp_path / "sft", tmp_path / "sft.json"
    start = time.perf_counter()
    stats = build_sft_data(small_params(params, 128), SMOL, smol_dir, processed, out, stats_path)
    elapsed = time.perf_counter() - start
    dataset = datasets.load_from_disk(str(out))
    assert set(dataset) == {"train", "val"} and len(dataset["train"]) > 0 and len(dataset["val"]) > 0
    assert json.loads(stats_path.read_text()) == stats
    assert stats["max_len"] == 128 and stats["template"] == "native" and stats["languages"] == ["zh", "en", "ko"]
    assert all(n <= 128 for n in dataset["train"]["n_tokens"])
    assert 0 < stats["loss_token_share"] < 1 and stats["truncated_dialogs"] > 0
    eff = stats["packing_efficiency"]
    assert eff["packed"] >= eff["naive"]
    curated = pl.read_parquet(processed / "dialogs.parquet")
    train_ids = {i for ids in dataset["train"]["dialog_ids"] for i in ids}
    assert train_ids == set(curated.filter(pl.col("split") == "train")["dialog_id"])
    print(f"end to end: {elapsed:.1f} s, {stats['samples']} samples, efficiency {eff}")


def test_the_stage_loads_a_custom_code_tokenizer_with_the_trust_its_base_was_built_with(params, tmp_path):
    """Baichuan2's tokenizer is custom code (trust_remote_code): the stage loads it through the shared loader."""
    from counseltune.schemas.tables import CuratedDialogs, Turns
    from counseltune.tables.io import write_table
    from tests.models import tiny_study_base

    name = "baichuan2-7b-chat"
    entry, base = tiny_study_base(name, tmp_path)
    dialogs, turn_rows = toy_tables()
    write_table(dialogs, tmp_path / "processed" / "dialogs.parquet", CuratedDialogs)
    write_table(turn_rows, tmp_path / "processed" / "turns.parquet", Turns)
    run = copy.deepcopy(params)
    run["models"][name] = entry | {"train": {**entry["train"], "max_len": 256}}
    stats = build_sft_data(run, name, base, tmp_path / "processed", tmp_path / "sft", tmp_path / "sft.json")
    assert stats["samples"]["train"] > 0 and stats["template"] == "baichuan2"
    row = datasets.load_from_disk(str(tmp_path / "sft"))["train"][0]
    assert 0 < row["n_loss_tokens"] < row["n_tokens"]
