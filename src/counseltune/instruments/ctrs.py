"""Young & Beck's Cognitive Therapy Rating Scale: its 11 items (each 0-6), per language. How a judge is asked to
rate them is fidelity/judges/ctrs_prompts.py."""

from __future__ import annotations

# item key -> what the item rates, per language; the keys are the JSON keys the judge must answer with.
CTRS_ITEMS = {
    "agenda": {
        "en": "sets an agenda with the client, with specific target problems, and follows it",
        "zh": "与来访者共同设定议程，有具体的目标问题，并按议程进行",
        "ko": "내담자와 함께 구체적인 목표 문제가 있는 안건을 정하고 따른다"},
    "feedback": {
        "en": "asks for the client's feedback on the session and checks understanding",
        "zh": "征求来访者对会谈的反馈，并确认来访者的理解",
        "ko": "회기에 대한 내담자의 피드백을 구하고 이해를 확인한다"},
    "understanding": {
        "en": "understands the client's internal reality and reflects it accurately (empathic skill)",
        "zh": "理解来访者的内在感受与处境，并准确地反映出来（共情能力）",
        "ko": "내담자의 내적 현실을 이해하고 정확히 반영한다(공감 기술)"},
    "interpersonal_effectiveness": {
        "en": "warmth, concern, confidence, genuineness and professionalism",
        "zh": "温暖、关切、自信、真诚与专业",
        "ko": "따뜻함, 관심, 자신감, 진정성, 전문성"},
    "collaboration": {
        "en": "works with the client as a team toward shared goals, with a good rapport",
        "zh": "与来访者结成合作团队，朝共同目标努力，关系融洽",
        "ko": "좋은 라포 속에서 내담자와 한 팀으로 공동 목표를 향해 일한다"},
    "pacing_and_efficient_use_of_time": {
        "en": "structures the time well, neither rushing nor dwelling on unproductive topics",
        "zh": "合理安排时间，既不仓促，也不在无益的话题上停留过久",
        "ko": "시간을 잘 구조화하여 서두르지도, 비생산적인 주제에 머물지도 않는다"},
    "guided_discovery": {
        "en": "uses questioning and exploration so the client reaches new perspectives, rather than debating or lecturing",
        "zh": "通过提问和探索引导来访者获得新视角，而不是辩论或说教",
        "ko": "논쟁이나 강의 대신 질문과 탐색으로 내담자가 새 관점에 이르도록 돕는다"},
    "focusing_on_key_cognitions_or_behaviors": {
        "en": "identifies and focuses on the key thoughts, beliefs and behaviors behind the problem",
        "zh": "识别并聚焦于问题背后的关键想法、信念和行为",
        "ko": "문제의 핵심 사고, 신념, 행동을 찾아 그에 초점을 맞춘다"},
    "strategy_for_change": {
        "en": "a coherent, promising cognitive-behavioral strategy for change",
        "zh": "提出连贯且有希望的认知行为改变策略",
        "ko": "일관되고 유망한 인지행동적 변화 전략을 세운다"},
    "application_of_cognitive_behavioral_techniques": {
        "en": "applies CBT techniques skillfully (e.g. examining evidence, alternative perspectives, experiments)",
        "zh": "熟练运用认知行为技术（如检验证据、替代视角、行为实验）",
        "ko": "인지행동 기법(증거 검토, 대안적 관점, 행동 실험 등)을 능숙하게 적용한다"},
    "homework": {
        "en": "assigns or reviews homework tailored to the client and explains its purpose",
        "zh": "布置或回顾贴合来访者的家庭作业，并说明其目的",
        "ko": "내담자에게 맞춘 과제를 내주거나 검토하고 그 목적을 설명한다"},
}
