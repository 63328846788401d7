"""Versioned prompt templates in zh (default), en and ko for every synthesis request.

Each Template carries its own version; it goes into ChatRequest.prompt_version, so editing a template's
text without bumping its VERSION would serve stale cached answers: bump it with every wording change.
"""

from __future__ import annotations

from dataclasses import dataclass

from counseltune.synthesize.codes import CODE_DESCRIPTIONS, TALK_DESCRIPTIONS

LANGUAGES = ("zh", "en", "ko")
DEFAULT_LANGUAGE = "zh"

# Speaker labels in transcripts, the same ones the parser reads back (parse.py).
SPEAKERS = {
    "zh": {"client": "来访者", "counselor": "咨询师"},
    "en": {"client": "Client", "counselor": "Counselor"},
    "ko": {"client": "내담자", "counselor": "상담자"},
}
COLON = {"zh": "：", "en": ": ", "ko": ": "}
NO_TOPIC = {"zh": "未指定", "en": "not specified", "ko": "지정되지 않음"}
# A turn prompt shows only the last few turns: a small model given the whole session echoes its early lines.
HISTORY_TURNS = 4
# The reply format of a turn request (decoded under turn_schema.py's schema, so the model cannot stray from it).
# No example value: a small model copies a placeholder ("the client's words") instead of speaking.
ANSWER_LINE = {
    "zh": "以 JSON 对象回答，把{speaker}的话放在 \"utterance\" 中。",
    "en": "Reply as a JSON object with the {speaker}'s words under \"utterance\".",
    "ko": "{speaker}의 말을 \"utterance\"에 담은 JSON 객체로 답하세요.",
}
EMPTY_HISTORY = {"zh": "（对话尚未开始）", "en": "(the conversation has not started yet)", "ko": "(아직 대화가 시작되지 않았습니다)"}

# The CBT session structure of Cactus / CBT-LLM: one stage per part of the session, in this order.
CBT_STAGES = ("agenda_setting", "automatic_thoughts", "examine_evidence", "cognitive_restructuring", "homework")
CBT_STAGE_DESCRIPTIONS = {
    "en": {
        "agenda_setting": "agenda setting: check in briefly and agree with the client on what to work on today",
        "automatic_thoughts": "identify automatic thoughts: help the client name the thought that went through their mind in the situation",
        "examine_evidence": "examine the evidence: explore with the client the evidence for and against that thought",
        "cognitive_restructuring": "cognitive restructuring: help the client find a more balanced, realistic alternative thought",
        "homework": "homework: agree on a small, concrete practice task for the coming week and summarize the session",
    },
    "zh": {
        "agenda_setting": "设定议程：简短了解近况，与来访者商定今天要讨论的问题",
        "automatic_thoughts": "识别自动思维：帮助来访者说出在该情境中闪过脑海的想法",
        "examine_evidence": "检验证据：和来访者一起探讨支持和反对这个想法的证据",
        "cognitive_restructuring": "认知重构：帮助来访者找到更平衡、更现实的替代想法",
        "homework": "布置作业：商定一个下周可以练习的小而具体的任务，并总结本次会谈",
    },
    "ko": {
        "agenda_setting": "안건 설정: 간단히 근황을 묻고 오늘 다룰 문제를 내담자와 함께 정하기",
        "automatic_thoughts": "자동적 사고 확인: 그 상황에서 떠오른 생각을 내담자가 말로 표현하도록 돕기",
        "examine_evidence": "증거 검토: 그 생각을 지지하는 증거와 반박하는 증거를 함께 살펴보기",
        "cognitive_restructuring": "인지 재구성: 더 균형 잡히고 현실적인 대안적 사고를 찾도록 돕기",
        "homework": "과제: 다음 주에 연습할 작고 구체적인 과제를 정하고 회기를 요약하기",
    },
}


@dataclass(frozen=True)
class Template:
    name: str
    version: str
    system: dict[str, str]   # language -> text with {fields}
    user: dict[str, str]

    @property
    def prompt_version(self) -> str:
        return f"{self.name}/{self.version}"

    def render(self, language: str, **fields: str) -> tuple[tuple[str, str], ...]:
        """(role, content) messages for ChatRequest.messages."""
        if language not in LANGUAGES:
            raise ValueError(f"prompt language must be one of {LANGUAGES}, got {language!r}")
        return (("system", self.system[language].format(**fields)), ("user", self.user[language].format(**fields)))


MI_COUNSELOR_TURN = Template(
    name="mi_counselor_turn", version="v2",
    system={
        "zh": "你是一名经验丰富的动机式访谈（MI）咨询师。请用中文，以共情、尊重自主、不评判的态度回应来访者。",
        "en": "You are an experienced Motivational Interviewing (MI) counselor. Respond in English with empathy, "
              "respect for the client's autonomy and without judgment.",
        "ko": "당신은 숙련된 동기강화상담(MI) 상담자입니다. 한국어로, 공감하며 내담자의 자율성을 존중하고 판단하지 않는 태도로 응답하세요.",
    },
    user={
        "zh": "来访者情况：{profile}\n主题：{topic}\n\n最近的对话：\n{history}\n\n你是咨询师。请写出咨询师的下一句话，它必须是{description}。"
              "说一两句新的话，不要重复前面说过的内容，不要写来访者的话。{answer}",
        "en": "About the client: {profile}\nTopic: {topic}\n\nThe last turns of the conversation:\n{history}\n\nYou are the "
              "counselor. Write the counselor's next utterance: it must be {description}. Say something new in one or two "
              "sentences; do not repeat earlier lines and do not write the client's part. {answer}",
        "ko": "내담자 정보: {profile}\n주제: {topic}\n\n최근 대화:\n{history}\n\n당신은 상담자입니다. 상담자의 다음 발화를 쓰세요. 반드시 "
              "{description}이어야 합니다. 앞에서 한 말을 반복하지 말고 새로운 말을 한두 문장으로 하며, 내담자의 말은 쓰지 마세요. {answer}",
    },
)

CLIENT_TURN = Template(
    name="client_turn", version="v2",
    system={
        "zh": "你在扮演一名心理咨询中的来访者。请用中文，以第一人称、口语化、真实自然地说话，每次只说一段话。",
        "en": "You are role-playing a client in a counseling session. Speak in English, in the first person, "
              "naturally and conversationally, one utterance at a time.",
        "ko": "당신은 상담 회기의 내담자 역할을 합니다. 한국어로, 1인칭으로, 자연스러운 구어체로 한 번에 한 발화만 말하세요.",
    },
    user={
        "zh": "你的情况：{profile}\n主题：{topic}\n\n最近的对话：\n{history}\n\n你是来访者。请写出来访者的下一句话，回应咨询师。{talk}"
              "说一两句新的话，不要重复前面说过的内容，不要写咨询师的话。{answer}",
        "en": "Your situation: {profile}\nTopic: {topic}\n\nThe last turns of the conversation:\n{history}\n\nYou are the "
              "client. Write the client's next utterance, answering the counselor. {talk}Say something new in one or two "
              "sentences; do not repeat earlier lines and do not write the counselor's part. {answer}",
        "ko": "당신의 상황: {profile}\n주제: {topic}\n\n최근 대화:\n{history}\n\n당신은 내담자입니다. 상담자에게 답하는 내담자의 다음 "
              "발화를 쓰세요. {talk}앞에서 한 말을 반복하지 말고 새로운 말을 한두 문장으로 하며, 상담자의 말은 쓰지 마세요. {answer}",
    },
)
_TALK_LINE = {"zh": "这句话应当是{description}。", "en": "It should be {description}. ", "ko": "이 발화는 {description}이어야 합니다. "}

MI_PLAIN_SESSION = Template(
    name="mi_plain_session", version="v1",
    system={
        "zh": "你是一名动机式访谈（MI）专家，负责编写高质量的中文心理咨询示范对话。",
        "en": "You are a Motivational Interviewing (MI) expert who writes high-quality demonstration counseling dialogs in English.",
        "ko": "당신은 고품질의 한국어 상담 시연 대화를 작성하는 동기강화상담(MI) 전문가입니다.",
    },
    user={
        "zh": "请写一段完整的动机式访谈咨询对话，共约{n_turns}轮发言，由来访者先开口，来访者和咨询师轮流发言。"
              "咨询师应使用开放式提问、反映、肯定和总结，唤起来访者的改变语句。\n来访者情况：{profile}\n主题：{topic}\n\n"
              "每句话单独一行，以“来访者：”或“咨询师：”开头，不要输出其他内容。",
        "en": "Write a complete Motivational Interviewing counseling dialog of about {n_turns} utterances. The client "
              "speaks first and client and counselor alternate. The counselor uses open questions, reflections, "
              "affirmations and summaries to evoke the client's change talk.\nAbout the client: {profile}\nTopic: {topic}\n\n"
              "Put each utterance on its own line starting with \"Client:\" or \"Counselor:\" and output nothing else.",
        "ko": "약 {n_turns}개의 발화로 이루어진 완전한 동기강화상담 대화를 쓰세요. 내담자가 먼저 말하고 내담자와 상담자가 번갈아 말합니다. "
              "상담자는 열린 질문, 반영, 인정, 요약을 사용해 내담자의 변화 대화를 이끌어 냅니다.\n내담자 정보: {profile}\n주제: {topic}\n\n"
              "각 발화는 \"내담자:\" 또는 \"상담자:\"로 시작하는 한 줄로 쓰고, 다른 내용은 출력하지 마세요.",
    },
)

CBT_COUNSELOR_TURN = Template(
    name="cbt_counselor_turn", version="v2",
    system={
        "zh": "你是一名认知行为疗法（CBT）咨询师。请用中文，温和、结构清晰地进行会谈。会谈依次包括：设定议程、识别自动思维、"
              "检验证据、认知重构、布置作业。",
        "en": "You are a Cognitive Behavioral Therapy (CBT) counselor. Speak in English, warmly and with a clear structure. "
              "The session moves through: agenda setting, identifying automatic thoughts, examining the evidence, "
              "cognitive restructuring, homework.",
        "ko": "당신은 인지행동치료(CBT) 상담자입니다. 한국어로, 따뜻하고 구조적으로 회기를 진행하세요. 회기는 안건 설정, 자동적 사고 확인, "
              "증거 검토, 인지 재구성, 과제 순서로 진행됩니다.",
    },
    user={
        "zh": "来访者情况：{profile}\n主题：{topic}\n\n最近的对话：\n{history}\n\n当前阶段：{stage}\n"
              "你是咨询师。请写出咨询师的下一句话，完成当前阶段的任务。说一两句新的话，不要重复前面说过的内容，不要写来访者的话。{answer}",
        "en": "About the client: {profile}\nTopic: {topic}\n\nThe last turns of the conversation:\n{history}\n\nCurrent "
              "stage: {stage}\nYou are the counselor. Write the counselor's next utterance, doing the work of the current "
              "stage. Say something new in one or two sentences; do not repeat earlier lines and do not write the client's "
              "part. {answer}",
        "ko": "내담자 정보: {profile}\n주제: {topic}\n\n최근 대화:\n{history}\n\n현재 단계: {stage}\n"
              "당신은 상담자입니다. 현재 단계의 작업을 하는 상담자의 다음 발화를 쓰세요. 앞에서 한 말을 반복하지 말고 새로운 말을 한두 "
              "문장으로 하며, 내담자의 말은 쓰지 마세요. {answer}",
    },
)

CBT_ANSWER = Template(
    name="cbt_answer", version="v1",
    system={
        "zh": "你是一名认知行为疗法（CBT）心理咨询师，回答来访者的求助问题。",
        "en": "You are a Cognitive Behavioral Therapy (CBT) counselor answering a client's question.",
        "ko": "당신은 내담자의 질문에 답하는 인지행동치료(CBT) 상담자입니다.",
    },
    user={
        "zh": "来访者的问题：{question}\n\n请用中文写一段CBT结构的回答，依次包含：共情与确认来访者的感受；识别其中的自动思维或认知歪曲；"
              "检验支持和反对这些想法的证据；提出更平衡的替代想法；给出一个具体可行的练习或作业。用自然段落书写，不要使用标题。",
        "en": "The client's question: {question}\n\nWrite a CBT-structured answer in English that, in order: validates "
              "the client's feelings; identifies the automatic thoughts or cognitive distortions involved; examines the "
              "evidence for and against them; offers a more balanced alternative thought; and suggests one concrete "
              "practice or homework. Write in natural paragraphs without headings.",
        "ko": "내담자의 질문: {question}\n\n다음 순서로 CBT 구조의 답변을 한국어로 쓰세요: 내담자의 감정을 공감하고 인정하기; 관련된 자동적 사고나 "
              "인지 왜곡 확인하기; 그 생각을 지지하고 반박하는 증거 검토하기; 더 균형 잡힌 대안적 사고 제시하기; 구체적인 연습이나 과제 하나 "
              "제안하기. 제목 없이 자연스러운 문단으로 쓰세요.",
    },
)

TEMPLATES = {t.name: t for t in (MI_COUNSELOR_TURN, CLIENT_TURN, MI_PLAIN_SESSION, CBT_COUNSELOR_TURN, CBT_ANSWER)}
PROMPT_VERSIONS = {name: t.prompt_version for name, t in TEMPLATES.items()}


def transcript(turns: list[tuple[str, str]], language: str, last: int | None = None) -> str:
    """'来访者：...' lines for the history part of a prompt (the `last` turns only, when given)."""
    if last is not None:
        turns = turns[-last:] if last > 0 else []
    if not turns:
        return EMPTY_HISTORY[language]
    speakers, colon = SPEAKERS[language], COLON[language]
    return "\n".join(f"{speakers[role]}{colon}{text}" for role, text in turns)


def answer_line(language: str, role: str) -> str:
    speaker = SPEAKERS[language][role].lower() if language == "en" else SPEAKERS[language][role]
    return ANSWER_LINE[language].format(speaker=speaker)


def mi_counselor_turn(language: str, profile: str, topic: str, history: list[tuple[str, str]], code: str):
    return MI_COUNSELOR_TURN.render(language, profile=profile, topic=topic,
                                    history=transcript(history, language, HISTORY_TURNS),
                                    description=CODE_DESCRIPTIONS[language][code], answer=answer_line(language, "counselor"))


def client_turn(language: str, profile: str, topic: str, history: list[tuple[str, str]], talk: str | None = None):
    """A simulated client turn; `talk` (change | sustain | neutral) steers it for MI, None leaves it free (CBT)."""
    line = _TALK_LINE[language].format(description=TALK_DESCRIPTIONS[language][talk]) if talk else ""
    return CLIENT_TURN.render(language, profile=profile, topic=topic, history=transcript(history, language, HISTORY_TURNS),
                              talk=line, answer=answer_line(language, "client"))


def mi_plain_session(language: str, profile: str, topic: str, n_turns: int):
    return MI_PLAIN_SESSION.render(language, profile=profile, topic=topic, n_turns=str(n_turns))


def cbt_counselor_turn(language: str, profile: str, topic: str, history: list[tuple[str, str]], stage: str):
    return CBT_COUNSELOR_TURN.render(language, profile=profile, topic=topic,
                                     history=transcript(history, language, HISTORY_TURNS),
                                     stage=CBT_STAGE_DESCRIPTIONS[language][stage], answer=answer_line(language, "counselor"))


def cbt_answer(language: str, question: str):
    return CBT_ANSWER.render(language, question=question)


def cbt_stage_schedule(n_counselor_turns: int) -> list[str]:
    """Spread the five stages over the counselor turns: the first is always the agenda, the last the homework."""
    if n_counselor_turns <= 1:
        return list(CBT_STAGES[:n_counselor_turns])
    last = len(CBT_STAGES) - 1
    return [CBT_STAGES[round(i * last / (n_counselor_turns - 1))] for i in range(n_counselor_turns)]
