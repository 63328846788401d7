"""The response cache: what the key covers, and entries that are whole or absent."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from counseltune.llm import ChatRequest, Reply, make_client, summary
from counseltune.llm.cache import ResponseCache, atomic_write, cache_key, key_fields

from .conftest import remote_config, user_requests

BASE = ChatRequest.of([{"role": "user", "content": "hello"}], max_tokens=32, temperature=0.7, seed=1)


@pytest.mark.parametrize("change", [
    {"messages": (("user", "hello!"),)}, {"messages": (("system", "hello"),)}, {"max_tokens": 33},
    {"temperature": 0.8}, {"top_p": 0.9}, {"seed": 2}, {"seed": None}, {"json_mode": True},
    {"prompt_version": "v2"},
])
def test_every_field_that_shapes_the_answer_is_in_the_key(change):
    assert cache_key("openai", "m", dataclasses.replace(BASE, **change)) != cache_key("openai", "m", BASE)


def test_backend_and_model_are_in_the_key():
    keys = {cache_key(b, m, BASE) for b in ("openai", "local") for m in ("a", "b")}
    assert len(keys) == 4


def test_the_tag_and_acceptance_policy_are_not_in_the_key():
    same = dataclasses.replace(BASE, tag="judge", require_complete=True, temperature=0.7)
    assert cache_key("openai", "m", same) == cache_key("openai", "m", BASE)
    assert cache_key("openai", "m", dataclasses.replace(BASE, temperature=0)) == \
        cache_key("openai", "m", dataclasses.replace(BASE, temperature=0.0))


def test_an_entry_round_trips_as_a_cached_reply(tmp_path):
    cache, key = ResponseCache(tmp_path), cache_key("openai", "m", BASE)
    assert cache.get(key) is None
    cache.put(key, key_fields("openai", "m", BASE), Reply("你好", 3, 2, "stop", cached=False))
    assert cache.get(key) == Reply("你好", 3, 2, "stop", cached=True)
    [entry] = tmp_path.rglob("*.json")
    assert entry.name == f"{key}.json" and json.loads(entry.read_text(encoding="utf-8"))["request"]["seed"] == 1


def test_a_damaged_entry_is_a_miss(tmp_path):
    cache, key = ResponseCache(tmp_path), cache_key("openai", "m", BASE)
    (tmp_path / key[:2]).mkdir()
    (tmp_path / key[:2] / f"{key}.json").write_text('{"reply": {"te', encoding="utf-8")
    assert cache.get(key) is None


def test_atomic_write_replaces_whole_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "a" / "entry.json"
    atomic_write(target, b"old")
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in target.parent.iterdir()] == ["entry.json"]


def test_local_weights_fingerprint_changes_with_the_adapter(tmp_path):
    from counseltune.llm.local import weights_fingerprint

    base, adapter = tmp_path / "base", tmp_path / "adapter"
    for folder in (base, adapter):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"weights")
    (base / "README.md").write_text("not part of the weights")
    before = weights_fingerprint(base, adapter)
    assert before == weights_fingerprint(base, adapter) != weights_fingerprint(base, None)
    (adapter / "model.safetensors").write_bytes(b"retrained")
    assert weights_fingerprint(base, adapter) != before


def entry_of(cache_dir, request) -> Path:
    [path] = [p for p in cache_dir.rglob("*.json") if p.stem == cache_key("openai", "fake-model", request)]
    return path


def test_an_entry_whose_text_is_not_a_string_is_moved_aside_and_asked_again(fake_server, api_key, tmp_path, caplog):
    server = fake_server()
    [request] = user_requests(1)
    make_client(remote_config(server, tmp_path)).complete([request])
    path = entry_of(tmp_path, request)
    entry = json.loads(path.read_text(encoding="utf-8"))
    entry["reply"]["text"] = 123
    path.write_text(json.dumps(entry), encoding="utf-8")

    client = make_client(remote_config(server, tmp_path))
    [result] = client.complete([request])

    assert isinstance(result, Reply) and result.text == "reply to: question 0" and not result.cached
    assert server.paid() == 2 and client.usage.cache_rejected == {"damaged": 1}
    assert path.with_name(path.name + ".bad").exists() and json.loads(path.read_text())["reply"]["text"] == result.text
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert str(path) in warning and "reply.text = 123, not a string" in warning and "asked again" in warning
    assert "\n" not in warning
    assert "1 cache entries rejected (damaged 1" in summary(client.usage, stage="t")


def test_an_entry_filed_under_another_key_is_never_served(fake_server, api_key, tmp_path):
    server = fake_server()
    first, second = user_requests(2)
    make_client(remote_config(server, tmp_path)).complete([first, second])
    shutil.copyfile(entry_of(tmp_path, first), entry_of(tmp_path, second))  # a file copied to the wrong place

    client = make_client(remote_config(server, tmp_path))
    results = client.complete([first, second])

    assert [r.text for r in results] == ["reply to: question 0", "reply to: question 1"]
    assert [r.cached for r in results] == [True, False]
    assert server.paid() == 3 and client.usage.cache_rejected == {"wrong_key": 1}


def test_an_entry_whose_request_does_not_hash_to_its_key_is_never_served(tmp_path):
    cache, key = ResponseCache(tmp_path), cache_key("openai", "m", BASE)
    other = key_fields("openai", "m", dataclasses.replace(BASE, messages=(("user", "something else"),)))
    cache.put(key, other, Reply("the answer to something else", 3, 2, "stop", cached=False))
    assert cache.get(key) is None and cache.rejected == {"wrong_key": 1}
    cache.put(key, key_fields("openai", "m", BASE), Reply("hi", 3, 2, "stop", cached=False))
    assert cache.get(key) == Reply("hi", 3, 2, "stop", cached=True)
