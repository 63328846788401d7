"""Issue 12: speaker prefixes — the real variants are read as what they are; a near miss is quarantined,
never merged into the other speaker's utterance. One grammar (ingest/speakers.py) for CPsyCounD and CPsyCounE."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from counseltune.ingest import cpsycound, cpsycoune
from counseltune.ingest.base import Ledger
from counseltune.ingest.speakers import SpeakerGrammar, line_endings, split_lines

GRAMMAR = SpeakerGrammar({"来访者": "client", "心理咨询师": "counselor"})


@pytest.mark.parametrize("line, role, text", [
    ("来访者：你好", "client", "你好"),
    ("来访者:你好", "client", "你好"),
    ("来访者 ：你好", "client", "你好"),
    ("来访者\u3000： 你好", "client", " 你好"),
    ("来访者﹕你好", "client", "你好"),
    ("心理咨询师︰请讲", "counselor", "请讲"),
    ("心理咨询师∶请讲", "counselor", "请讲"),
    ("  来访者：你好", "client", "你好"),
    ("来访者（姚先生）：我希望", "client", "我希望"),
    ("来访者1：我性格急躁", "client", "我性格急躁"),
    ("心理咨询师（扮演丈夫）：听到这些", "counselor", "听到这些"),
    ("来访者", "client", ""),  # a bare speaker word (the end of real case_1755): an empty utterance
])
def test_prefix_variants_are_read_as_that_speaker(line, role, text):
    parsed = GRAMMAR.classify(line)
    assert (parsed.kind, parsed.role, parsed.text) == ("prefix", role, text)


@pytest.mark.parametrize("line", [
    "来访着：我不想说了",  # misspelt speaker word
    "来访：我不想说了",  # clipped
    "咨询师：你好",
    "来访者们：我们吵架了",
    "来访者;我不想说了",  # a speaker word and another separator
    "来访者 - 我不想说了",
    "来访者 我不想说了",
    "来访者｜我不想说了",
    "好的，我们下次见。来访者：谢谢你。",  # a prefix after a sentence end: a lost line break
    "心理咨询师：好的。来访者：谢谢你。",
    "好的。\u2028来访者：谢谢你。",
])
def test_near_misses_are_flagged(line):
    assert GRAMMAR.classify(line).kind == "near_miss"


@pytest.mark.parametrize("line", [
    "妈妈：你怎么又这么晚回家？", "A：我觉得", "1. 深呼吸：慢慢吸气", "（深呼吸练习）", "来访者的情绪逐渐平稳。",
    "请你扮演来访者：不，请你说说", "我们来做一个角色扮演。",
])
def test_other_lines_are_text(line):
    assert GRAMMAR.classify(line).kind == "text"


def test_line_breaks_are_crlf_cr_or_lf():
    assert split_lines("a\r\nb\rc\nd") == ["a", "b", "c", "d"]
    assert [line_endings(t) for t in ("a\nb", "a\r\nb", "a\rb", "a\rb\nc", "a")] == ["lf", "crlf", "cr", "mixed", "none"]


# --- CPsyCounD ------------------------------------------------------------------------------------------

def read_cpsycound(root: Path):
    ledger = Ledger("cpsycound", cpsycound.UNIT)
    return cpsycound.read(root, ledger, {}), ledger


def test_cpsycound_variants_and_cr_only_endings_keep_client_words_out_of_the_counselor_turn(tmp_path):
    lines = ["来访者：我睡不好。", "", "心理咨询师：多久了？", "", "来访者 ：两个月了。", "", "心理咨询师﹕工作忙吗？", "",
             "来访者︰很忙。"]
    (tmp_path / "case_1.txt").write_text("\r".join(lines) + "\r", encoding="utf-8")  # CR-only (classic Mac)
    (tmp_path / "case_2.txt").write_text("\n".join(lines[:4]) + "\r\n" + "\r\n".join(lines[4:]), encoding="utf-8")
    parsed, ledger = read_cpsycound(tmp_path)
    assert ledger.quarantined == 0
    for dialog in parsed:
        assert [(t.role, t.text) for t in dialog.turns] == [
            ("client", "我睡不好。"), ("counselor", "多久了？"), ("client", "两个月了。"), ("counselor", "工作忙吗？"), ("client", "很忙。"),
        ]
        assert [t.location.split(":")[1] for t in dialog.turns] == ["1", "3", "5", "7", "9"]
    assert [d.meta["file_line_endings"] for d in parsed] == ["cr", "mixed"]


@pytest.mark.parametrize("bad", ["来访着：其实我不想来。", "来访者;其实我不想来。", "好的。来访者：其实我不想来。"])
def test_cpsycound_near_miss_quarantines_the_file_with_its_line(tmp_path, bad):
    (tmp_path / "case_1.txt").write_text(f"来访者：你好。\n\n心理咨询师：请讲。\n{bad}\n", encoding="utf-8")
    parsed, ledger = read_cpsycound(tmp_path)
    assert parsed == []
    row = ledger.rows[0]
    assert (row["file"], row["record"], row["reason"]) == ("case_1.txt", "4", "unparsed_speaker_prefix")
    assert "case_1.txt:4" in row["detail"] and "来访者：" in row["detail"]


# --- CPsyCounE ------------------------------------------------------------------------------------------

def read_cpsycoune(root: Path, items: list[str]):
    (root / "Career").mkdir(exist_ok=True)
    (root / "Career" / "1.json").write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    ledger = Ledger("cpsycoune", cpsycoune.UNIT)
    return cpsycoune.read(root, ledger, {}), ledger


def test_cpsycoune_uses_the_same_variants(tmp_path):
    parsed, ledger = read_cpsycoune(tmp_path, ["求助者 ：我很焦虑。", "支持者﹕说说看？", "求助者︰工作\r压力大。"])
    assert ledger.quarantined == 0
    assert [(t.role, t.text) for t in parsed[0].turns] == [("client", "我很焦虑。"), ("counselor", "说说看？"), ("client", "工作\n压力大。")]


def test_cpsycoune_element_holding_two_utterances_is_split_by_speaker(tmp_path):
    parsed, _ = read_cpsycoune(tmp_path, ["求助者：我很焦虑。", "支持者：说说看？\r求助者：工作压力大。"])
    assert [(t.role, t.text) for t in parsed[0].turns] == [("client", "我很焦虑。"), ("counselor", "说说看？"), ("client", "工作压力大。")]


@pytest.mark.parametrize("bad", ["求助着：工作压力大。", "支持者：说说看？\n求助者;工作压力大。", "支持者：好的。求助者：工作压力大。"])
def test_cpsycoune_near_miss_is_quarantined(tmp_path, bad):
    parsed, ledger = read_cpsycoune(tmp_path, ["求助者：我很焦虑。", bad])
    assert parsed == []
    assert [(r["record"], r["reason"]) for r in ledger.rows] == [("#1", "unparsed_speaker_prefix")]
