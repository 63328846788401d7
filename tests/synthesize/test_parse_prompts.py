"""The transcript parser (zh/en/ko, malformed lines), reply cleaning, and the versioned prompt templates."""

from __future__ import annotations

import pytest

from counseltune.llm.types import ChatRequest
from counseltune.synthesize import prompts
from counseltune.synthesize.codes import CODE_DESCRIPTIONS, TALK_DESCRIPTIONS
from counseltune.synthesize.parse import clean_reply, parse_transcript


@pytest.mark.parametrize("text, expected", [
    ("来访者：我最近睡不好。\n咨询师：能多说一些吗？", [("client", "我最近睡不好。"), ("counselor", "能多说一些吗？")]),
    ("Client: I drink too much.\nCounselor: What worries you?", [("client", "I drink too much."), ("counselor", "What worries you?")]),
    ("내담자: 요즘 너무 힘들어요.\n상담자: 어떤 점이 힘드세요?", [("client", "요즘 너무 힘들어요."), ("counselor", "어떤 점이 힘드세요?")]),
    # half-width colon in Chinese, full-width in Korean, the source corpora's other names
    ("求助者:我失恋了\n心理咨询师：这很难受。\n내담자：네", [("client", "我失恋了"), ("counselor", "这很难受。"), ("client", "네")]),
])
def test_parses_each_language(text, expected):
    parsed = parse_transcript(text)
    assert parsed.turns == expected and parsed.preamble == []


def test_malformed_lines_are_handled():
    text = (
        "Sure! Here is the dialog you asked for:\n"      # preamble: reported, not a turn
        "\n"
        "**Client:** I can't sleep.\n"                   # markdown bold
        "It has been weeks.\n"                            # continuation line
        "---\n"                                           # separator
        "2. Counselor (open question): What keeps you up?\n"  # numbering and an annotation
        "[Client]: Work, mostly.\r\n"                     # brackets, CRLF
        "- counsellor: \"That sounds exhausting.\"\n"     # list marker, British spelling, quotes
        "Counselor:\n"                                    # a bare prefix at the end: no turn
    )
    parsed = parse_transcript(text)
    assert parsed.preamble == ["Sure! Here is the dialog you asked for:"]
    assert parsed.turns == [
        ("client", "I can't sleep.\nIt has been weeks."),
        ("counselor", "What keeps you up?"),
        ("client", "Work, mostly."),
        ("counselor", "That sounds exhausting."),
    ]


def test_text_without_any_prefix_gives_no_turns():
    parsed = parse_transcript("I am sorry, I cannot write that.")
    assert parsed.turns == [] and parsed.preamble == ["I am sorry, I cannot write that."]


def test_a_word_that_only_starts_like_a_name_is_not_a_prefix():
    assert parse_transcript("Client: hi\nClientele matters: yes").turns == [("client", "hi\nClientele matters: yes")]


@pytest.mark.parametrize("reply, role, expected", [
    ("咨询师：你愿意多说一些吗？", "counselor", ("你愿意多说一些吗？", False)),
    ("“听起来你很累。”", "counselor", ("听起来你很累。", False)),
    ("What brings you here?\nClient: My wife.", "counselor", ("What brings you here?", True)),
    ("상담자: 그렇군요.\n내담자: 네.\n상담자: 더 말해 주세요.", "counselor", ("그렇군요.", True)),
    ('He said "no" and "yes".', "client", ('He said "no" and "yes".', False)),
])
def test_clean_reply(reply, role, expected):
    assert clean_reply(reply, role) == expected


@pytest.mark.parametrize("language", prompts.LANGUAGES)
def test_every_template_renders_in_every_language(language):
    history = [("client", "x"), ("counselor", "y")]
    rendered = [
        prompts.mi_counselor_turn(language, "profile", "topic", history, "complex_reflection"),
        prompts.client_turn(language, "profile", "topic", history, "sustain"),
        prompts.client_turn(language, "profile", "topic", [], None),
        prompts.mi_plain_session(language, "profile", "topic", 8),
        prompts.cbt_counselor_turn(language, "profile", "topic", history, "examine_evidence"),
        prompts.cbt_answer(language, "question?"),
    ]
    for messages in rendered:
        assert [role for role, _ in messages] == ["system", "user"]
        assert "{" not in messages[1][1]  # every field filled
        ChatRequest(messages=messages)    # a valid request
    assert CODE_DESCRIPTIONS[language]["complex_reflection"] in rendered[0][1][1]
    assert TALK_DESCRIPTIONS[language]["sustain"] in rendered[1][1][1]
    assert TALK_DESCRIPTIONS[language]["sustain"] not in rendered[2][1][1]
    assert prompts.EMPTY_HISTORY[language] in rendered[2][1][1]
    assert prompts.CBT_STAGE_DESCRIPTIONS[language]["examine_evidence"] in rendered[4][1][1]
    assert f"{prompts.SPEAKERS[language]['client']}{prompts.COLON[language]}x" in rendered[0][1][1]


def test_rendered_history_parses_back():
    history = [("client", "我睡不好"), ("counselor", "多久了？"), ("client", "一个月")]
    for language in prompts.LANGUAGES:
        assert parse_transcript(prompts.transcript(history, language)).turns == history


def test_every_template_has_a_version():
    assert set(prompts.PROMPT_VERSIONS) == {"mi_counselor_turn", "client_turn", "mi_plain_session", "cbt_counselor_turn", "cbt_answer"}
    assert all(v.startswith(f"{name}/v") for name, v in prompts.PROMPT_VERSIONS.items())


def test_unknown_language_is_refused():
    with pytest.raises(ValueError, match="prompt language"):
        prompts.cbt_answer("fr", "question")


@pytest.mark.parametrize("n, expected", [
    (1, ["agenda_setting"]),
    (2, ["agenda_setting", "homework"]),
    (4, ["agenda_setting", "automatic_thoughts", "cognitive_restructuring", "homework"]),
    (5, list(prompts.CBT_STAGES)),
])
def test_cbt_stage_schedule_opens_with_the_agenda_and_ends_with_homework(n, expected):
    assert prompts.cbt_stage_schedule(n) == expected


def test_long_cbt_sessions_keep_the_stage_order():
    schedule = prompts.cbt_stage_schedule(12)
    assert sorted(schedule, key=prompts.CBT_STAGES.index) == schedule and set(schedule) == set(prompts.CBT_STAGES)
