"""Structured outputs: a request's JSON Schema goes to the endpoint, a refusing endpoint falls back once, the schema
keys the cache, and the local backend decodes under it (real SmolLM2)."""

from __future__ import annotations

import json
import logging

import pytest
from jsonschema import Draft202012Validator

from counseltune.llm import ChatRequest, OutputSchema, Reply, make_client

from .conftest import remote_config, user_requests

REPLY_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["reply"],
                "properties": {"reply": {"type": "string", "maxLength": 200}}}
OTHER_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["reply"],
                "properties": {"reply": {"type": "string", "maxLength": 100}}}


def test_a_schema_request_asks_for_strict_json_schema(fake_server, api_key, tmp_path):
    server = fake_server()
    schema = OutputSchema.of("miti-judge-v1", REPLY_SCHEMA)
    [result] = make_client(remote_config(server, tmp_path)).complete(user_requests(1, schema=schema))
    assert server.log[0].body["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "miti-judge-v1", "schema": REPLY_SCHEMA, "strict": True}}
    assert json.loads(result.text) == {"reply": "question 0"}


def test_an_endpoint_refusing_json_schema_falls_back_once_and_says_so_once(fake_server, api_key, tmp_path, caplog):
    server = fake_server(default="refuse_json_schema")
    client = make_client(remote_config(server, tmp_path, concurrency=1))
    schema = OutputSchema.of("judge", REPLY_SCHEMA)
    with caplog.at_level(logging.WARNING, logger="counseltune.llm"):
        first = client.complete(user_requests(3, schema=schema))
        second = client.complete(user_requests(2, prefix="again", schema=schema))

    assert all(isinstance(r, Reply) for r in first + second), first + second
    statuses = [e.status for e in server.log]
    assert statuses == [400, 200, 200, 200, 200, 200]   # refused once, every request after it as json_object
    assert [e.body["response_format"]["type"] for e in server.log[1:]] == ["json_object"] * 5
    said = [r for r in caplog.records if "refused response_format json_schema" in r.getMessage()]
    assert len(said) == 1
    assert client.usage.failures == {}


def test_the_schema_is_part_of_the_cache_key(fake_server, api_key, tmp_path):
    server = fake_server()
    client = make_client(remote_config(server, tmp_path))
    [request] = user_requests(1)
    asks = [request, *(ChatRequest(request.messages, request.max_tokens, schema=OutputSchema.of("a", s))
                       for s in (REPLY_SCHEMA, OTHER_SCHEMA))]
    client.complete(asks)
    assert server.paid() == 3 and len(list(tmp_path.rglob("*.json"))) == 3   # plain, schema A, schema B

    again = make_client(remote_config(server, tmp_path)).complete(asks)
    assert server.paid() == 3 and all(r.cached for r in again)


def miti_like_schema() -> dict:
    rated = {"type": "object", "additionalProperties": False, "required": ["score", "justification"],
             "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 5},
                            "justification": {"type": "string", "minLength": 1, "maxLength": 80}}}
    return {"type": "object", "additionalProperties": False, "required": ["codes", "globals"],
            "properties": {"codes": {"type": "object", "additionalProperties": False, "required": ["1", "3"],
                                     "properties": {t: {"enum": ["open_question", "affirm", "other"]}
                                                    for t in ("1", "3")}},
                           "globals": {"type": "object", "additionalProperties": False,
                                       "required": ["empathy", "partnership"],
                                       "properties": {"empathy": rated, "partnership": rated}}}}


@pytest.mark.slow
def test_local_constrained_decoding_returns_schema_valid_json(base_model_dir, tmp_path):
    model_dir = base_model_dir("smollm2-135m-instruct")
    schema = miti_like_schema()
    transcript = ("[0] Client: I drink too much on weekends.\n[1] Counselor: What worries you about it?\n"
                  "[2] Client: My wife is upset.\n[3] Counselor: You care a lot about her.")
    requests = [ChatRequest.of([{"role": "system", "content": "Rate the counselor. Answer with a JSON object."},
                                {"role": "user", "content": transcript + suffix}], max_tokens=160,
                               schema=OutputSchema.of("judge", schema)) for suffix in ("", "\nBe brief.")]
    client = make_client({"backend": "local", "model": "smollm2-135m-instruct", "model_dir": str(model_dir),
                          "cache_dir": str(tmp_path / "cache"), "batch_size": 2})
    replies = client.complete(requests)
    assert all(isinstance(r, Reply) for r in replies), replies
    for reply in replies:
        data = json.loads(reply.text)
        assert not list(Draft202012Validator(schema).iter_errors(data)), reply.text
        assert reply.finish_reason == "stop"


def test_the_bitmask_unpacks_as_llguidance_applies_it():
    import llguidance.numpy
    import numpy as np

    from counseltune.llm.constrained import unpack_bitmask

    rng = np.random.default_rng(0)
    mask = rng.integers(-2**31, 2**31, size=(3, 5), dtype=np.int64).astype(np.int32)
    for width in (160, 150, 170):   # the mask's own width, a narrower and a wider vocabulary
        logits = np.zeros((3, width), dtype=np.float32)
        llguidance.numpy.apply_token_bitmask_inplace(logits, mask)
        assert (unpack_bitmask(mask, width).numpy() == np.isfinite(logits)).all()
