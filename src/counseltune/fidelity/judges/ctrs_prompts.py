"""The CTRS judge's instructions, per language (bump ctrs.PROMPT_VERSION whenever a word here changes).

Young & Beck's Cognitive Therapy Rating Scale: 11 items, each 0 (poor) to 6 (excellent); under each item the
manual's anchors for 0, 2, 4 and 6 (ctrs_anchors.py).
"""

from __future__ import annotations

from counseltune.fidelity.judges.ctrs_anchors import ANCHOR_LEVELS, CTRS_ANCHORS
from counseltune.instruments.ctrs import CTRS_ITEMS

_INTRO = {
    "en": ("You are an expert rater of cognitive behavioral therapy using the Cognitive Therapy Rating Scale (CTRS, "
           "Young & Beck). Read the counseling session transcript (each line \"[turn_index] Speaker: utterance\") "
           "and rate the COUNSELOR on each item below with an integer from 0 to 6 "
           "(0 poor, 2 mediocre, 4 good, 6 excellent; odd numbers lie between), each with a one- or two-sentence "
           "justification citing what the counselor did or failed to do. Rate an item the session gives no "
           "chance for by what the counselor did about it (usually low), never leave it out."),
    "zh": ("你是一名资深的认知行为治疗评估员，使用认知治疗评定量表（CTRS，Young & Beck）。阅读下面的咨询会谈记录"
           "（每行格式为\"[turn_index] 说话人: 话语\"），对咨询师在以下每一项上评分，取 0 到 6 的整数"
           "（0 差，2 一般，4 良好，6 优秀，奇数介于其间），并各附一两句理由，说明咨询师做了或没做什么。"
           "会谈中没有机会体现的项目，按咨询师的实际表现评分（通常较低），不得省略。"),
    "ko": ("당신은 인지치료 평정척도(CTRS, Young & Beck)를 사용하는 인지행동치료 전문 평정자입니다. 아래 상담 기록"
           "(각 줄 \"[turn_index] 화자: 발화\")을 읽고 상담자를 각 항목에 대해 0에서 6 사이의 정수로 평정하세요"
           "(0 미흡, 2 보통, 4 좋음, 6 탁월, 홀수는 그 사이). 각 항목에 상담자가 한 일 또는 하지 않은 일을 근거로 "
           "한두 문장의 이유를 쓰세요. 회기에서 다룰 기회가 없던 항목도 상담자의 실제 수행으로 평정하고(대개 낮음) "
           "생략하지 마세요."),
}
_ANSWER = {
    "en": "Answer with ONLY a JSON object, no other text:",
    "zh": "只输出一个 JSON 对象，不要输出任何其他文字（键名保持英文，理由用中文）：",
    "ko": "다른 텍스트 없이 JSON 객체만 출력하세요 (키는 영어, 이유는 한국어):",
}


def anchor_lines(item: str, language: str) -> str:
    """The manual's anchors of one item, one indented line per level: '    0 = ...' ... '    6 = ...'."""
    return "\n".join(f"    {level} = {text}" for level, text in zip(ANCHOR_LEVELS, CTRS_ANCHORS[item][language]))


def ctrs_system(language: str) -> str:
    items = "\n".join(f"- {key}: {text[language]}\n{anchor_lines(key, language)}" for key, text in CTRS_ITEMS.items())
    shape = ('{"items": {' + ", ".join(f'"{key}": {{"score": <0-6>, "justification": "..."}}'
                                       for key in list(CTRS_ITEMS)[:2]) + ', ... every item above ...}}')
    return f"{_INTRO[language]}\n{items}\n\n{_ANSWER[language]}\n{shape}"
