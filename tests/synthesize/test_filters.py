"""Quality filters: every reason triggered on purpose by a bad session, and a good one passes."""

from __future__ import annotations

from types import SimpleNamespace

import polars as pl
import pytest

from counseltune.synthesize.filters import (
    FilterConfig,
    check_session,
    duplicates,
    language_share,
    leakage,
    plan_adherence,
    schema_failures,
)
from counseltune.synthesize.generate import Turn
from counseltune.synthesize.seeds import Seed
from tests.conftest import dialog_rows, frames

CFG = FilterConfig(min_turns=4, max_turns=8, min_language_share=0.7, min_plan_adherence=0.8, near_threshold=0.85)

GOOD = [
    Turn("client", "我最近总是失眠，晚上躺在床上脑子里全是工作的事情。", ""),
    Turn("counselor", "你愿意多说一些工作上的情况吗？", "", code="open_question"),
    Turn("client", "老板每天都催进度，我觉得自己快撑不住了。", ""),
    Turn("counselor", "听起来这份压力已经影响到你的身体了。", "", code="complex_reflection"),
]


def t(role: str, text: str, code: str | None = None) -> Turn:
    return Turn(role, text, text, code=code)


def test_a_good_session_passes():
    verdict = check_session(GOOD, "zh", CFG)
    assert verdict.accepted and verdict.reason is None
    assert verdict.plan_adherence == 1.0 and verdict.language_share == 1.0


@pytest.mark.parametrize("turns, reason", [
    (GOOD[:2], "too_few_turns"),
    (GOOD * 3, "too_many_turns"),
    ([GOOD[0], GOOD[2], GOOD[1], GOOD[3]], "role_alternation"),
    ([t(x.role, "I am feeling quite stressed at work these days.", x.code) for x in GOOD], "wrong_language"),
    (GOOD[:3] + [t("counselor", "作为一个AI，我无法真正理解你的感受。", "complex_reflection")], "role_leakage"),
    (GOOD[:3] + [t("counselor", "你觉得压力影响到身体了吗？", "complex_reflection")], "plan_adherence"),  # a reflection asked
    ([GOOD[0], t("counselor", "你愿意多说一些。", "open_question")] + GOOD[2:], "plan_adherence"),       # a question without ?
])
def test_each_reason_is_triggered(turns, reason):
    verdict = check_session(turns, "zh", CFG)
    assert verdict.reason == reason, verdict.failures
    assert verdict.detail.startswith(reason)


def test_all_failures_are_reported_and_the_first_decides():
    bad = [t("client", "As an AI language model I cannot help."), t("client", "Hello there.")]
    verdict = check_session(bad, "zh", CFG)
    assert [r for r, _ in verdict.failures] == ["too_few_turns", "role_alternation", "wrong_language", "role_leakage"]


@pytest.mark.parametrize("text", [
    "As an AI, I can't feel emotions.", "I'm an AI language model.", "I am just a chatbot, but...",
    "作为一个AI，我建议你休息。", "作为人工智能，我不能诊断。", "我只是一个人工智能助手。",
    "저는 AI 언어 모델이라서 잘 모르지만요.", "인공지능으로서 말씀드리면", "AI로서 조언하자면",
    "That helps.\nClient: I see.",  # the model wrote the other side
])
def test_leakage_phrases(text):
    assert leakage(text)


@pytest.mark.parametrize("text", ["I feel like a robot at work.", "我在一家AI公司上班，压力很大。", "Our clients are demanding."])
def test_ordinary_mentions_are_not_leakage(text):
    assert leakage(text) is None


def test_language_share_per_script():
    assert language_share("我很好 OK", "zh") == pytest.approx(3 / 5)
    assert language_share("괜찮아요 ok", "ko") == pytest.approx(4 / 6)
    assert language_share("fine 好", "en") == pytest.approx(4 / 5)
    assert language_share("123 ...", "en") == 0.0


def test_plan_adherence_checks_only_question_and_reflection_codes():
    turns = [t("counselor", "Here is some information.", "information"), t("counselor", "You feel stuck.", "simple_reflection"),
             t("counselor", "What would help?", "question"), t("counselor", "You want to stop?", "reflection"),
             t("client", "no code?")]
    assert plan_adherence(turns) == (pytest.approx(2 / 3), 3)
    assert plan_adherence([t("counselor", "ok", None)]) == (None, 0)


def _seed(dialog_id: str, text: str) -> Seed:
    return Seed(dialog_id, "zh", None, (text[:10],), None, text)


def test_duplicates_of_each_other_and_copies_of_the_seed():
    seed_text = "\n".join(x.text for x in GOOD)
    other = ("来访者说她和母亲关系紧张，每次回家都会因为工作、婚姻和生活习惯争吵，吵完以后又后悔。\n"
             "咨询师回应说这种反复的冲突让人疲惫，也让她很想逃开，可她心里仍然在乎母亲的看法。\n"
             "她说自己其实很想被理解，希望母亲能听她把话说完，而不是一开口就被打断。")
    ids = ["synthetic:a-1", "synthetic:a-2", "synthetic:a-3", "synthetic:a-4"]
    texts = [seed_text, other, other, other.replace("疲惫", "疲倦")]
    found = duplicates(ids, texts, [_seed("toy:s", seed_text), _seed("toy:s", seed_text)], CFG)
    assert found["synthetic:a-1"][0] == "copies_seed" and "toy:s" in found["synthetic:a-1"][1]
    assert "synthetic:a-2" not in found                     # the first of the pair stays
    assert found["synthetic:a-3"][0] == "exact_duplicate"
    assert found["synthetic:a-4"][0] == "near_duplicate"


def test_schema_failures_name_only_the_broken_session():
    good, bad = dialog_rows("synthetic:ok-1", [("client", "你好"), ("counselor", "你好。")]), \
        dialog_rows("synthetic:bad-1", [("client", "你好"), ("counselor", "你好。")])
    bad[1][1]["mi_code"] = "not_a_code"
    dialogs, turns = frames(good, bad)
    dialogs = dialogs.with_columns(pl.lit("train").alias("split"))
    broken = schema_failures(dialogs, turns, "test")
    assert list(broken) == ["synthetic:bad-1"] and "mi_code" in broken["synthetic:bad-1"]
    assert schema_failures(dialogs.head(1), turns.head(2), "test") == {}


def test_unknown_filter_keys_are_refused():
    with pytest.raises(ValueError, match="min_turn"):
        FilterConfig.from_params({"min_turn": 3})


def test_a_session_stuck_in_a_loop_is_quarantined_as_degenerate():
    from counseltune.synthesize.filters import FilterConfig, check_session, repetition

    loop = "Mm-hmm. The client's part is: Mm-hmm."
    turns = [SimpleNamespace(role=r, text=loop, code=None) for r in ["client", "counselor"] * 3]
    assert repetition("\n".join(t.text for t in turns), "en") > 0.6
    assert check_session(turns, "en", FilterConfig()).reason == "degenerate_repetition"
    fine = ["I drink more than I want to.", "What would you like to change first?",
            "Maybe the evenings, after work.", "Evenings are when it gets hard for you."]
    assert repetition("\n".join(fine), "en") == 0.0
    assert repetition("我最近睡不好。\n你说你最近睡眠不太好。", "zh") < 0.3
