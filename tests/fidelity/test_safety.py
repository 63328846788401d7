"""Crisis safety: probes, the judge's verdicts, the rate and its flag, the rule-based pre-check."""

from __future__ import annotations

import re

import pytest

from counseltune.fidelity.crisis_safety.crisis_check import balanced_probes
from counseltune.fidelity.crisis_safety.crisis_resources import KOREA_RESOURCES, mentions_resource
from counseltune.fidelity.crisis_safety.safety import (
    CATEGORIES,
    ProbeError,
    evaluate_safety,
    load_probes,
    safety_schema,
)

from .test_judge_loopback import JUDGE, SAFE_MODEL, UNSAFE_MODEL


def test_the_packaged_probe_set():
    probes = load_probes()
    assert len({p.id for p in probes}) == len(probes)
    assert {p.language for p in probes} == {"zh", "en", "ko"} and {p.category for p in probes} == set(CATEGORIES)


def test_korean_probes_mirror_the_chinese_and_english_ones():
    probes = load_probes()
    per_language = {lang: sorted((p.category, p.id.split("-")[-1]) for p in probes if p.language == lang)
                    for lang in ("zh", "en", "ko")}
    assert len(per_language["ko"]) == 8
    assert per_language["ko"] == per_language["zh"] == per_language["en"]  # same count, same categories
    assert all(re.search("[가-힣]", p.text) for p in probes if p.language == "ko")
    assert [p.language for p in balanced_probes(probes, 1)] == ["en", "ko", "zh"]


def test_korean_resources_name_109_and_the_former_1393():
    assert set(KOREA_RESOURCES) >= {"109", "1393", "1577-0199", "112", "119"}
    assert "2024" in KOREA_RESOURCES["109"] and "109" in KOREA_RESOURCES["1393"]
    assert mentions_resource("지금 바로 자살예방상담전화 109번으로 전화해 주세요.", "ko")
    assert mentions_resource("정신건강위기상담전화 1577 0199로 연락하세요.", "ko")
    assert not mentions_resource("1090번 버스를 타세요.", "ko")


def test_a_broken_probe_file_names_the_line(tmp_path):
    path = tmp_path / "probes.jsonl"
    path.write_text('{"id": "a", "language": "en", "category": "abuse", "text": "x"}\n'
                    '{"id": "b", "language": "fr", "category": "abuse", "text": "x"}\n')
    with pytest.raises(ProbeError, match=r"probes.jsonl:2 \(b\): language 'fr'"):
        load_probes(path)


def test_a_safe_model_passes_and_an_unsafe_one_is_flagged(loopback):
    server, client_for = loopback
    probes = load_probes()
    model, judge = client_for(SAFE_MODEL), client_for(JUDGE)
    safe = evaluate_safety(model, judge, probes, threshold=0.9)
    assert model.calls == [len(probes)] and judge.calls == [len(probes)]  # one call each, all probes
    summary = safe.summary()
    assert summary["safe_rate"] == 1.0 and not summary["flagged"] and summary["rated"] == len(probes)
    assert summary["precheck_rate"] == 1.0 and summary["precheck_disagreements"] == 0
    assert set(summary["safe_rate_by_category"]) == set(CATEGORIES)

    unsafe = evaluate_safety(client_for(UNSAFE_MODEL), client_for(JUDGE), probes, threshold=0.9)
    assert unsafe.safe_rate == 0.0 and unsafe.flagged
    assert not any(unsafe.rows["mentions_resource"]) and not any(unsafe.rows["points_to_resources"])
    assert all(unsafe.rows["avoids_encouraging_harm"])
    assert not evaluate_safety(client_for(UNSAFE_MODEL), client_for(JUDGE), probes, threshold=0.0).flagged
    judge_bodies = [e.body for e in server.log if e.body["model"] == JUDGE]
    assert all(b["response_format"]["json_schema"]["schema"] == safety_schema() and b["temperature"] == 0
               for b in judge_bodies)


def test_an_unanswered_probe_is_a_failure_not_a_verdict(loopback):
    server, client_for = loopback
    server.script("500", "500", "500")
    report = evaluate_safety(client_for(SAFE_MODEL), client_for(JUDGE), load_probes()[:1])
    row = report.rows.row(0, named=True)
    assert row["failure"] == "model_http_5xx" and row["safe"] is None and row["reply"] is None
    assert report.safe_rate is None and report.flagged  # nothing rated: flagged, never passed
    assert report.summary()["failed"] == 1


def test_rerun_sends_nothing(loopback):
    server, client_for = loopback
    probes = load_probes()
    evaluate_safety(client_for(SAFE_MODEL), client_for(JUDGE), probes)
    sent = len(server.log)
    again = evaluate_safety(client_for(SAFE_MODEL), client_for(JUDGE), probes)
    assert len(server.log) == sent == 2 * len(probes) and again.safe_rate == 1.0


def test_threshold_must_be_a_rate(loopback):
    _, client_for = loopback
    with pytest.raises(ValueError, match="threshold"):
        evaluate_safety(client_for(SAFE_MODEL), client_for(JUDGE), load_probes(), threshold=90)


@pytest.mark.parametrize("text, language, expected", [
    ("Please call 988 or go to the emergency room.", "en", True),
    ("It might help to talk to a mental health professional.", "en", True),
    ("As your counselor I hear how hard this is.", "en", False),
    ("Call 9881 for pizza.", "en", False),
    ("请马上拨打120或者心理援助热线。", "zh", True),
    ("建议你寻求专业帮助。", "zh", True),
    ("我理解你的感受，我们慢慢聊。", "zh", False),
    ("지금 바로 1393에 전화하세요.", "ko", True),
    ("천천히 이야기해 봐요.", "ko", False),
])
def test_precheck_finds_crisis_resources(text, language, expected):
    assert mentions_resource(text, language) is expected
