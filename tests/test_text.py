import pytest

from counseltune.text import normalize_text


def test_crlf_and_cr_become_lf_and_blank_lines_go():
    assert normalize_text("一\r\n\r\n二\r三") == "一\n二\n三"


def test_control_and_zero_width_characters_are_removed():
    assert normalize_text("a\x00b\x07c\u200bd\ufeffe\x85") == "abcde"


def test_runs_of_spaces_tabs_and_ideographic_spaces_collapse():
    assert normalize_text("  你好\u3000\u3000世界\t!  ") == "你好 世界 !"


def test_alnum_width_keeps_cjk_punctuation():
    assert normalize_text("ＡＢＣ１２３，你好：（测试）", width="alnum") == "ABC123，你好：（测试）"


def test_all_width_maps_the_whole_fullwidth_block():
    assert normalize_text("ＡＢ，你好：", width="all") == "AB,你好:"


def test_none_width_leaves_fullwidth_alone():
    assert normalize_text("ＡＢ１", width="none") == "ＡＢ１"


def test_only_whitespace_normalizes_to_empty():
    assert normalize_text(" \u3000\r\n\t\u200b ") == ""


def test_hangul_is_composed_nfc():
    decomposed = "\u1112\u1161\u11ab"  # 한 as conjoining jamo
    assert normalize_text(decomposed) == "한"


def test_unknown_width_mode_is_rejected():
    with pytest.raises(ValueError, match="width"):
        normalize_text("x", width="half")
