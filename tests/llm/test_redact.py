"""The privacy guard: identifiers in Chinese and English text become placeholders; ordinary numbers stay."""

from __future__ import annotations

import pytest

from counseltune.llm import ChatRequest, Redactor

CASES = [
    # (text, redacted, counts)
    ("我叫张伟，今年30岁。", "我叫[NAME]，今年30岁。", {"name": 1}),
    ("我叫王小明今年上大学", "我叫[NAME]今年上大学", {"name": 1}),
    ("My name is Mary Jones and I'm 25.", "My name is [NAME] and I'm 25.", {"name": 1}),
    ("Please call me Sam.", "Please call me [NAME].", {"name": 1}),
    ("我的手机是13812345678。", "我的手机是[PHONE]。", {"phone": 1}),
    ("手机 138-1234-5678 或 +86 138 1234 5678", "手机 [PHONE] 或 [PHONE]", {"phone": 2}),
    ("座机010-12345678，深圳(0755)1234567", "座机[PHONE]，深圳[PHONE]", {"phone": 2}),
    ("office +86 10 12345678", "office [PHONE]", {"phone": 1}),
    ("Call (415) 555-0123, 415.555.0199 or +44 20 7946 0958.", "Call [PHONE], [PHONE] or [PHONE].", {"phone": 3}),
    ("邮箱 zhang.wei+test@mail.example.com.cn 联系", "邮箱 [EMAIL] 联系", {"email": 1}),
    ("身份证号11010519491231002X。", "身份证号[ID]。", {"id_number": 1}),
    ("卡号 4111 1111 1111 1111，另一张6222021234567890128", "卡号 [BANK_CARD]，另一张[BANK_CARD]",
     {"bank_card": 2}),
    ("我住在北京市朝阳区建国路88号3栋501室。", "我住在[ADDRESS]。", {"address": 1}),
    ("地址：广东省深圳市南山区科技园路一号", "地址：[ADDRESS]", {"address": 1}),
    ("I live at 1600 Pennsylvania Avenue, Apt 4B in town.", "I live at [ADDRESS] in town.", {"address": 1}),
]
NON_MATCHES = [
    "2023年我花了3999元买了手机，房间号302，时间10:30，日期2023-10-01。",
    "In 2019 I paid $1,299.99 for 3 items; my zip is 94110 and I sleep 8 hours.",
    "我是学生，在学校里住。我叫不出他的名字", "call me tomorrow", "my name is not important",
    "身份证号110105194912310021",    # wrong check character
    "卡号 4111 1111 1111 1112",       # fails the Luhn check
    "ticket 12345678, order 123-4567, score 98.5%, 1/3 of 300 people",
    "我住在北京，在朝阳区工作。",          # a city or district alone identifies no one
]


@pytest.mark.parametrize("text, redacted, counts", CASES)
def test_identifiers_are_replaced_and_counted(text, redacted, counts):
    assert Redactor().redact(text) == (redacted, counts)


@pytest.mark.parametrize("text", NON_MATCHES)
def test_ordinary_text_and_numbers_are_left_alone(text):
    assert Redactor().redact(text) == (text, {})


def test_names_the_caller_lists_are_redacted_wherever_they_occur():
    redactor = Redactor(names=("李雷", "李雷雷", "Ann Lee"))
    assert redactor.redact("李雷雷和李雷见了Ann Lee") == ("[NAME]和[NAME]见了[NAME]", {"name": 3})


def test_a_request_is_redacted_message_by_message():
    request = ChatRequest.of([{"role": "system", "content": "Be kind."},
                              {"role": "user", "content": "我叫张伟，电话13812345678"}], max_tokens=9, tag="t")
    clean, counts = Redactor().redact_request(request)
    assert clean.messages == (("system", "Be kind."), ("user", "我叫[NAME]，电话[PHONE]"))
    assert (clean.max_tokens, clean.tag) == (9, "t") and counts == {"name": 1, "phone": 1}


# Issue 12 item 9 and issue 14: each of these slipped through before (checked against the old redact.py).
HOLES = [
    ("我是李娜", "我是[NAME]", {"name": 1}),
    ("王建国昨天又骂我了。", "[NAME]昨天又骂我了。", {"name": 1}),
    ("我的电话是１３８１２３４５６７８……", "我的电话是[PHONE]……", {"phone": 1}),  # the ellipsis stays as written
    ("my name is sarah", "my name is [NAME]", {"name": 1}),
    ("I'm Sarah Connor.", "I'm [NAME].", {"name": 1}),
    ("我叫欧阳娜娜，今年大三。", "我叫[NAME]，今年大三。", {"name": 1}),
    ("我同事上官婉儿总针对我。", "我同事[NAME]总针对我。", {"name": 1}),
    ("我的咨询师陈晓红女士很耐心。", "我的咨询师[NAME]女士很耐心。", {"name": 1}),
    ("저는 김민수입니다.", "저는 [NAME]입니다.", {"name": 1}),
    ("제 이름은 남궁민이에요.", "제 이름은 [NAME]이에요.", {"name": 1}),
    ("제 전화번호는 010-1234-5678입니다.", "제 전화번호는 [PHONE]입니다.", {"phone": 1}),
    ("+82 (0)10 1111 2222로 전화 주세요.", "[PHONE]로 전화 주세요.", {"phone": 1}),
    ("주민등록번호 900101-1234568", "주민등록번호 [ID]", {"id_number": 1}),
    ("주민등록번호: 0305124123455", "주민등록번호: [ID]", {"id_number": 1}),   # no dash: the check digit verifies
]
NOT_HOLES = [
    "我跟李老师说了这件事。",        # a surname with a title names no one
    "我最近沉迷王者荣耀。", "来访者：谢谢您，心理咨询师。", "祝您早日走出困境。", "我现在在读高二。",
    "I'm sad.", "I'm so tired of everything.", "I'm going to the doctor tomorrow.", "I'm more anxious about it.",
    "저는 학생입니다.", "저는 선생님이에요.",
    "주민등록번호: 0305124123456",    # no dash and a wrong check digit
    "코드 901301-1234568",           # month 13: no birth date
]


@pytest.mark.parametrize("text, redacted, counts", HOLES)
def test_forms_the_old_guard_missed(text, redacted, counts):
    assert Redactor().redact(text) == (redacted, counts)


@pytest.mark.parametrize("text", NOT_HOLES)
def test_look_alikes_stay(text):
    assert Redactor().redact(text) == (text, {})


def test_full_width_text_is_matched_but_only_the_identifier_changes():
    text = "ＯＫ，我的邮箱是ｌｉ．ｎａ＠ｅｘａｍｐｌｅ．ｃｏｍ，卡号６２２２０２１２３４５６７８９０１２８。"
    assert Redactor().redact(text) == ("ＯＫ，我的邮箱是[EMAIL]，卡号[BANK_CARD]。", {"email": 1, "bank_card": 1})


def test_an_identifier_inside_a_name_pattern_goes_whole():
    # The old guard sent "call me [NAME][EMAIL]"; the longer finding wins and is counted once.
    assert Redactor().redact("call me Sarah.Connor@example.org") == ("call me [EMAIL]", {"email": 1})
    assert Redactor(names=("李娜",)).redact("联系李娜：lina@example.com") == ("联系[NAME]：[EMAIL]", {"name": 1, "email": 1})


def test_counts_handed_out_are_copies_of_the_cached_ones():
    first = Redactor().redact("我叫张伟")[1]
    first["name"] += 5
    assert Redactor().redact("我叫张伟")[1] == {"name": 1}
