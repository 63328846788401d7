"""The per-turn schema of the turn-by-turn generators: what it lets through (checked by jsonschema and by the
grammar engine the local backend decodes under), and a real local decode under it."""

from __future__ import annotations

import json

import pytest

from counseltune.llm import ChatRequest, make_client
from counseltune.llm.cache import cache_key
from counseltune.synthesize import prompts
from counseltune.synthesize.turn_schema import TurnError, read_turn, turn_schema, utterance_chars

CODE = ("code", "open_question")


@pytest.mark.parametrize("reply, problem", [
    ('{"code":"open_question","utterance":"What brings you here today?"}', None),
    ('{"code":"open_question","utterance":"Client: I feel stuck."}', "breaks pattern"),
    ('{"code":"open_question","utterance":"How are you?\\nClient: fine"}', "breaks pattern"),
    ('{"code":"open_question","utterance":"   "}', "breaks pattern"),
    ('{"code":"simple_reflection","utterance":"You feel stuck."}', "code breaks enum"),
    ('{"utterance":"What brings you here today?"}', "breaks required"),
    ('{"code":"open_question","utterance":"' + "why " * 80 + '"}', "breaks maxLength"),
    ('Counselor: What brings you here?', "not JSON"),
])
def test_read_turn_accepts_only_a_turn_of_its_schema(reply, problem):
    schema = turn_schema("mi_planned_counselor_turn", "en", 96, CODE)
    if problem is None:
        assert read_turn(reply, schema) == {"code": "open_question", "utterance": "What brings you here today?"}
    else:
        with pytest.raises(TurnError, match=problem):
            read_turn(reply, schema)


@pytest.mark.parametrize("code, ending, good, bad", [
    ("open_question", "question", "What brings you here?", "Tell me more."),
    ("simple_reflection", "statement", "You feel stuck.", "You feel stuck?"),
])
def test_a_planned_question_or_reflection_takes_its_form(code, ending, good, bad):
    schema = turn_schema("t", "en", 96, ("code", code), ending)
    assert read_turn(json.dumps({"code": code, "utterance": good}), schema)["utterance"] == good
    with pytest.raises(TurnError, match="breaks pattern"):
        read_turn(json.dumps({"code": code, "utterance": bad}), schema)
    with pytest.raises(TurnError, match="breaks pattern"):
        read_turn(json.dumps({"code": code, "utterance": "?"}), schema)


def test_the_utterance_bound_follows_the_token_cap_and_the_script():
    assert utterance_chars("en", 96, CODE) < utterance_chars("en", 192, CODE)
    assert utterance_chars("zh", 96, CODE) < utterance_chars("en", 96, CODE) / 2
    assert utterance_chars("en", 8) == 16   # never below a short sentence


@pytest.fixture(scope="module")
def smollm2(base_model_dir):
    return base_model_dir("smollm2-135m-instruct")


def test_the_grammar_engine_refuses_what_the_schema_refuses(smollm2):
    """llguidance (the local backend's constrained decoding) holds the pattern and the bound, token by token."""
    import llguidance
    import llguidance.hf
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    view = llguidance.hf.from_tokenizer(tokenizer)
    schema = turn_schema("mi_planned_counselor_turn", "en", 96, CODE)
    grammar = llguidance.LLMatcher.grammar_from_json_schema(schema.text, defaults={"whitespace_flexible": False})
    bound = schema.schema["properties"]["utterance"]["maxLength"]

    def accepted(utterance: str) -> bool:
        matcher = llguidance.LLMatcher(view, grammar, log_level=0)
        ids = tokenizer.encode(json.dumps({"code": "open_question", "utterance": utterance}, separators=(",", ":")))
        return matcher.try_consume_tokens(ids) == len(ids) and matcher.is_accepting()

    assert accepted("What would you like to talk about today?")
    assert not accepted("Client: I feel stuck.")
    assert not accepted("What now?\nClient: no idea")
    assert not accepted("a" * (bound + 1))
    # an English utterance at the bound still fits the token cap with its JSON (and a stop token)
    longest = ("So what I hear is that the evenings are the hardest part of your week, and you would like "
               "to find something that helps you wind down without a drink. What have you tried so far?" * 2)[:bound]
    assert accepted(longest)
    text = json.dumps({"code": "open_question", "utterance": longest}, separators=(",", ":"))
    assert len(tokenizer.encode(text)) + 1 <= 96


def test_a_local_turn_decoded_under_its_schema_is_one_utterance(smollm2, tmp_path):
    client = make_client({"backend": "local", "model": "smollm2-135m-instruct", "model_dir": str(smollm2),
                          "cache_dir": str(tmp_path / "cache"), "batch_size": 2})
    history = [("client", "I drink most evenings to unwind and my wife is worried."),
               ("counselor", "It sounds like the evenings are hard."), ("client", "Yeah. Counselor: what do I do?")]
    schema = turn_schema("mi_planned_counselor_turn", "en", 64, CODE)
    request = ChatRequest(prompts.mi_counselor_turn("en", "A man who drinks in the evenings.", "alcohol", history,
                                                    "open_question"), max_tokens=64, schema=schema,
                          repetition_penalty=1.2)
    [reply] = client.complete([request])
    turn = read_turn(reply.text, schema)   # valid by construction: closed before the cap, no speaker label
    assert reply.finish_reason == "stop" and turn["code"] == "open_question" and turn["utterance"].strip()
    plain = ChatRequest(request.messages, max_tokens=64, schema=schema)
    assert cache_key("local", "m", request) != cache_key("local", "m", plain)   # the penalty is part of the key
