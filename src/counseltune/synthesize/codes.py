"""The MI codes a plan is written in: their families, which ones the adherence check knows, and what each means.

A code is the corpus' finest label (mi_code where a source has it, else the mi_behavior family), so a
plan fitted on AnnoMI's full file speaks in MITI subtypes and one fitted on the simple file in families.
"""

from __future__ import annotations

from counseltune.schemas.tables import CLIENT_TALK, MI_BEHAVIORS, MI_CODES

FAMILY = {
    "open_question": "question", "closed_question": "question",
    "simple_reflection": "reflection", "complex_reflection": "reflection",
    "information": "therapist_input", "advice": "therapist_input", "negotiation": "therapist_input",
    "options": "therapist_input",
    "affirm": "other", "general": "other",
}
assert set(FAMILY) == set(MI_CODES) and set(FAMILY.values()) <= set(MI_BEHAVIORS)

QUESTION_CODES = frozenset({"question", "open_question", "closed_question"})
REFLECTION_CODES = frozenset({"reflection", "simple_reflection", "complex_reflection"})


def columns_of(code: str) -> tuple[str, str | None]:
    """(mi_behavior, mi_code) for a planned code: a family code leaves mi_code empty."""
    if code in FAMILY:
        return FAMILY[code], code
    if code in MI_BEHAVIORS:
        return code, None
    raise ValueError(f"unknown MI code {code!r}: expected one of {MI_CODES} or {MI_BEHAVIORS}")


def code_of(mi_behavior: str | None, mi_code: str | None) -> str | None:
    """The corpus code of a turn: the subtype where present, else the family, else None (uncoded)."""
    return mi_code or mi_behavior


# What each code asks the counselor to do, per prompt language (MITI 4.2.1 / AnnoMI definitions, shortened).
CODE_DESCRIPTIONS: dict[str, dict[str, str]] = {
    "en": {
        "open_question": "an open question that invites the client to elaborate (what/how/tell me more), ending with a question mark",
        "closed_question": "a closed question answerable with yes/no or a short fact, ending with a question mark",
        "question": "a question to the client, ending with a question mark",
        "simple_reflection": "a simple reflection: restate what the client said in other words, as a statement (not a question)",
        "complex_reflection": "a complex reflection: add meaning or feeling the client implied, as a statement (not a question)",
        "reflection": "a reflection of what the client said, as a statement (not a question)",
        "information": "give relevant information or feedback, neutrally and without telling the client what to do",
        "advice": "offer a suggestion or advice, with permission and respecting the client's autonomy",
        "negotiation": "negotiate a goal or next step together with the client",
        "options": "present several options the client could choose from",
        "therapist_input": "give information or a suggestion, respecting the client's autonomy",
        "affirm": "an affirmation: recognize a strength, effort or value of the client genuinely",
        "general": "a general facilitative remark (greeting, structuring the session, brief acknowledgement)",
        "other": "a facilitative remark (affirmation, greeting or structuring)",
    },
    "zh": {
        "open_question": "一个开放式提问，引导来访者展开讲述（什么/怎样/多说一些），以问号结尾",
        "closed_question": "一个封闭式提问，可用是/否或简短事实回答，以问号结尾",
        "question": "一个提问，以问号结尾",
        "simple_reflection": "简单反映：用自己的话复述来访者刚才的意思，用陈述句（不是问句）",
        "complex_reflection": "复杂反映：说出来访者话语中隐含的意义或情感，用陈述句（不是问句）",
        "reflection": "反映来访者的话，用陈述句（不是问句）",
        "information": "提供相关信息或反馈，语气中立，不替来访者做决定",
        "advice": "在征得同意的前提下提出建议，尊重来访者的自主",
        "negotiation": "与来访者共同商定目标或下一步",
        "options": "提出几个可供来访者选择的方案",
        "therapist_input": "提供信息或建议，尊重来访者的自主",
        "affirm": "肯定：真诚地认可来访者的优点、努力或价值",
        "general": "一般性的促进性话语（问候、安排会谈结构、简短回应）",
        "other": "促进性话语（肯定、问候或安排结构）",
    },
    "ko": {
        "open_question": "내담자가 자세히 이야기하도록 이끄는 열린 질문(무엇/어떻게/더 말해 주세요), 물음표로 끝남",
        "closed_question": "예/아니오나 짧은 사실로 답할 수 있는 닫힌 질문, 물음표로 끝남",
        "question": "내담자에게 하는 질문, 물음표로 끝남",
        "simple_reflection": "단순 반영: 내담자의 말을 다른 말로 되돌려 주기, 평서문으로(질문 아님)",
        "complex_reflection": "복합 반영: 내담자가 암시한 의미나 감정을 더해 말하기, 평서문으로(질문 아님)",
        "reflection": "내담자의 말을 반영하기, 평서문으로(질문 아님)",
        "information": "관련 정보나 피드백을 중립적으로 제공하기, 결정을 대신하지 않음",
        "advice": "허락을 구한 뒤 제안이나 조언하기, 내담자의 자율성 존중",
        "negotiation": "내담자와 함께 목표나 다음 단계를 정하기",
        "options": "내담자가 고를 수 있는 여러 선택지 제시하기",
        "therapist_input": "정보나 제안 제공하기, 내담자의 자율성 존중",
        "affirm": "인정하기: 내담자의 강점, 노력, 가치를 진심으로 인정",
        "general": "일반적인 촉진 발화(인사, 회기 구조화, 짧은 반응)",
        "other": "촉진 발화(인정, 인사, 구조화)",
    },
}

TALK_DESCRIPTIONS: dict[str, dict[str, str]] = {
    "en": {
        "change": "change talk: voice a desire, ability, reason or need to change, or a small commitment",
        "sustain": "sustain talk: voice reasons to keep things as they are, or doubts about changing",
        "neutral": "neutral talk: answer or describe your situation without leaning toward or away from change",
    },
    "zh": {
        "change": "改变语句：表达想改变、能改变、改变的理由或需要，或一个小小的承诺",
        "sustain": "维持语句：表达维持现状的理由，或对改变的疑虑",
        "neutral": "中性语句：回答问题或描述处境，不偏向改变也不偏向维持",
    },
    "ko": {
        "change": "변화 대화: 변화하고 싶은 마음, 능력, 이유, 필요 또는 작은 다짐을 말하기",
        "sustain": "유지 대화: 지금 상태를 유지할 이유나 변화에 대한 의심을 말하기",
        "neutral": "중립 대화: 변화 쪽으로도 유지 쪽으로도 기울지 않고 답하거나 상황을 설명하기",
    },
}
assert all(set(d) == set(CLIENT_TALK) for d in TALK_DESCRIPTIONS.values())
assert all(set(d) == set(MI_CODES) | set(MI_BEHAVIORS) for d in CODE_DESCRIPTIONS.values())
