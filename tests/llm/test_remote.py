"""The OpenAI backend against a real loopback server: faults, retries, concurrency, cache, budget, privacy."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from counseltune.llm import BudgetExceeded, ChatRequest, Failure, Reply, make_client

from .conftest import remote_config, user_requests


def cache_files(cache_dir) -> list:
    return sorted(p for p in cache_dir.rglob("*.json"))


@pytest.mark.parametrize("fault, reason, options", [
    ("429", "http_429", {}),
    ("500", "http_5xx", {}),
    ("503", "http_5xx", {}),
    ("hang", "timeout", {}),
    ("drop", "connection", {}),
    ("malformed_json", "malformed", {}),
    ("missing_choices", "malformed", {}),
    ("empty_content", "malformed", {}),
    ("not_json", "invalid_json", {"json_mode": True}),
])
def test_each_fault_is_retried_survived_and_counted(fault, reason, options, fake_server, api_key, tmp_path):
    server = fake_server(faults=[fault], hang_s=2.0)
    client = make_client(remote_config(server, tmp_path, timeout_s=0.3))
    [result] = client.complete(user_requests(1, **options))

    assert isinstance(result, Reply), result
    expected = json.dumps({"reply": "question 0"}) if options.get("json_mode") else "reply to: question 0"
    assert result.text == expected and result.finish_reason == "stop" and not result.cached
    assert client.usage.requests == 2
    assert client.usage.attempt_errors == {reason: 1}
    assert client.usage.failures == {}
    assert server.paid() == (2 if fault in ("malformed_json", "missing_choices", "empty_content", "not_json") else 1)


def test_retry_after_is_honored(fake_server, api_key, tmp_path):
    server = fake_server(faults=["429"], retry_after=0.6)
    client = make_client(remote_config(server, tmp_path))  # backoff alone would wait ~0.01 s
    started = time.perf_counter()
    [result] = client.complete(user_requests(1))
    assert isinstance(result, Reply)
    assert time.perf_counter() - started >= 0.6
    first, second = server.log
    assert second.started - first.ended >= 0.6


def test_backoff_grows_between_attempts(fake_server, api_key, tmp_path):
    server = fake_server(faults=["500", "503", "500"])
    client = make_client(remote_config(server, tmp_path, backoff_base_s=0.1, backoff_max_s=1.0))
    [result] = client.complete(user_requests(1))

    assert isinstance(result, Reply)
    assert [e.status for e in server.log] == [500, 503, 500, 200]
    assert len({json.dumps(e.body, sort_keys=True) for e in server.log}) == 1  # one request, four attempts
    gaps = [b.started - a.ended for a, b in zip(server.log, server.log[1:])]
    # equal jitter: the n-th wait is at least half of base * 2**(n-1)
    assert [g >= 0.1 * 2 ** n / 2 * 0.9 for n, g in enumerate(gaps)] == [True, True, True], gaps
    assert client.usage.requests == 4 and client.usage.attempt_errors == {"http_5xx": 3}


@pytest.mark.parametrize("fault, reason, options", [
    ("503", "http_5xx", {}),
    ("empty_content", "malformed", {}),
])
def test_exhausted_retries_give_a_failure_never_data(fault, reason, options, fake_server, api_key, tmp_path):
    server = fake_server(default=fault)
    client = make_client(remote_config(server, tmp_path / "cache", max_retries=2))
    [result] = client.complete(user_requests(1, **options))

    assert result == Failure(reason, result.detail, attempts=3)
    assert len(server.log) == 3
    assert client.usage.failures == {reason: 1} and client.usage.attempt_errors == {reason: 3}
    assert cache_files(tmp_path / "cache") == []  # only successful replies are cached


@pytest.mark.parametrize("options", [{"require_complete": True}, {"json_mode": True}])
def test_a_truncated_reply_is_never_retried_as_a_transport_fault(options, fake_server, api_key, tmp_path):
    # The same request would be cut again: a retry would only buy another full answer. One paid attempt, priced.
    server = fake_server(default="length")
    client = make_client(remote_config(server, tmp_path / "cache", max_retries=5))
    [result] = client.complete(user_requests(1, **options))

    assert result == Failure("truncated", result.detail, attempts=1)
    assert len(server.log) == server.paid() == 1 and client.usage.requests == 1
    assert client.usage.cost_usd > 0 and client.usage.failures == {"truncated": 1}
    assert cache_files(tmp_path / "cache") == []  # never data


def test_a_truncated_reply_goes_to_a_caller_that_validates_it(fake_server, api_key, tmp_path):
    # fidelity/structured.py re-asks it itself: it comes back as a Reply, cached, so a re-run replays it for free
    server = fake_server(default="length")
    [result] = make_client(remote_config(server, tmp_path)).complete(user_requests(1, json_mode=True, caller_validates=True))
    assert isinstance(result, Reply) and result.finish_reason == "length" and len(server.log) == 1
    [again] = make_client(remote_config(server, tmp_path)).complete(user_requests(1, json_mode=True, caller_validates=True))
    assert again.cached and again.text == result.text and len(server.log) == 1


def test_a_truncated_reply_is_data_when_the_caller_accepts_it(fake_server, api_key, tmp_path):
    server = fake_server(default="length")
    [result] = make_client(remote_config(server, tmp_path)).complete(user_requests(1))
    assert isinstance(result, Reply) and result.finish_reason == "length"


def test_concurrency_limit_is_respected(fake_server, api_key, tmp_path):
    server = fake_server(latency_s=0.1)
    results = make_client(remote_config(server, tmp_path, concurrency=3)).complete(user_requests(12))
    assert all(isinstance(r, Reply) for r in results)
    assert server.max_in_flight == 3


def test_replies_come_back_in_request_order(fake_server, api_key, tmp_path):
    server = fake_server(rates={"500": 0.3, "429": 0.2}, retry_after=0.01)
    results = make_client(remote_config(server, tmp_path, max_retries=10)).complete(user_requests(20))
    assert [r.text for r in results] == [f"reply to: question {i}" for i in range(20)]


def test_a_second_run_is_answered_from_the_cache(fake_server, api_key, tmp_path):
    server = fake_server()
    first = make_client(remote_config(server, tmp_path)).complete(user_requests(5))
    sent = len(server.log)

    again = make_client(remote_config(server, tmp_path))
    # The tag is a label, not part of the key.
    second = again.complete([ChatRequest(r.messages, r.max_tokens, tag="other stage") for r in user_requests(5)])

    assert len(server.log) == sent == 5
    assert [r.text for r in second] == [r.text for r in first] and all(r.cached for r in second)
    assert again.usage.cache_hits == 5 and again.usage.requests == 0 and again.usage.cost_usd == 0


def test_a_new_prompt_version_misses_the_cache(fake_server, api_key, tmp_path):
    server = fake_server()
    make_client(remote_config(server, tmp_path)).complete(user_requests(2))
    make_client(remote_config(server, tmp_path)).complete(user_requests(2, prompt_version="v2"))
    assert server.paid() == 4


def test_equal_requests_in_one_call_are_paid_once(fake_server, api_key, tmp_path):
    server = fake_server()
    client = make_client(remote_config(server, tmp_path))
    results = client.complete(user_requests(2) * 3)
    assert server.paid() == 2 and client.usage.cache_hits == 4
    assert [r.text for r in results] == ["reply to: question 0", "reply to: question 1"] * 3


def test_the_budget_stops_the_run_and_a_rerun_pays_only_for_the_rest(fake_server, api_key, tmp_path):
    server = fake_server()
    requests = user_requests(10)
    client = make_client(remote_config(server, tmp_path, budget_usd=0.5, concurrency=1))
    with pytest.raises(BudgetExceeded) as stopped:
        client.complete(requests)

    err = stopped.value
    assert 0 < err.done < err.total == 10
    assert server.paid() == err.done == sum(isinstance(r, Reply) for r in err.results)
    assert err.results[err.done:] == [None] * (10 - err.done)
    assert client.usage.cost_usd <= 0.5 and err.spent_usd == client.usage.cost_usd
    assert "budget_usd" in str(err) and f"{err.done} of 10" in str(err)

    rerun = make_client(remote_config(server, tmp_path, budget_usd=100.0))
    assert all(isinstance(r, Reply) for r in rerun.complete(requests))
    assert server.paid() == 10 and rerun.usage.cache_hits == err.done
    assert set(Counter(server.bodies()).values()) == {1}


def test_concurrent_requests_never_overspend(fake_server, api_key, tmp_path):
    server = fake_server(latency_s=0.02)
    client = make_client(remote_config(server, tmp_path, budget_usd=1.0, concurrency=8))
    with pytest.raises(BudgetExceeded):
        client.complete(user_requests(30))
    assert 0 < client.usage.cost_usd <= 1.0


def test_identifiers_are_redacted_before_they_leave(fake_server, api_key, tmp_path):
    server = fake_server()
    text = "我叫张伟，手机13812345678，邮箱zhang.wei@example.com。My name is Mary Jones, call 415-555-0123."
    client = make_client(remote_config(server, tmp_path), names=["Dr. Lin"])
    [result] = client.complete([ChatRequest.of([{"role": "user", "content": text},
                                                {"role": "assistant", "content": "Dr. Lin here."}])])

    sent = json.dumps(server.log[0].body, ensure_ascii=False)
    for secret in ("张伟", "13812345678", "zhang.wei@example.com", "Mary Jones", "415-555-0123", "Dr. Lin"):
        assert secret not in sent
    assert "[PHONE]" in sent and "[EMAIL]" in sent and "[NAME]" in sent
    assert result.redactions == 6
    assert client.usage.redactions_by_kind == {"name": 3, "phone": 2, "email": 1}


def test_redaction_can_be_switched_off(fake_server, api_key, tmp_path):
    server = fake_server()
    client = make_client(remote_config(server, tmp_path, redact="off"))
    client.complete([ChatRequest.of([{"role": "user", "content": "call 13812345678"}])])
    assert server.log[0].body["messages"][0]["content"] == "call 13812345678"
    assert client.usage.redactions == 0


def test_json_mode_asks_for_a_json_object(fake_server, api_key, tmp_path):
    server = fake_server()
    [result] = make_client(remote_config(server, tmp_path)).complete(user_requests(1, json_mode=True))
    assert server.log[0].body["response_format"] == {"type": "json_object"}
    assert json.loads(result.text) == {"reply": "question 0"}
