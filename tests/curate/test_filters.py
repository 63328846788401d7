from counseltune.curate.filters import filter_reasons
from tests.conftest import dialog_rows, frames

CURATE = {"min_turns": 3, "max_turns": 6, "max_utterance_chars": 20, "require_counselor": True}


def reasons(*dialogs):
    d, t = frames(*dialogs)
    return dict(filter_reasons(d, t, CURATE).select("dialog_id", "reason").iter_rows())


def test_each_filter_names_its_reason():
    got = reasons(
        dialog_rows("t:short", [("client", "你好"), ("counselor", "你好")]),
        dialog_rows("t:long", [("client", "嗯"), ("counselor", "嗯")] * 4),
        dialog_rows("t:wordy", [("client", "嗯"), ("counselor", "这" * 21), ("client", "嗯")]),
        dialog_rows("t:nocounselor", [("client", "一"), ("client", "二"), ("client", "三")]),
        dialog_rows("t:ok", [("client", "一"), ("counselor", "二"), ("client", "三")]),
    )
    assert got == {"t:short": "too_few_turns", "t:long": "too_many_turns", "t:wordy": "utterance_too_long",
                   "t:nocounselor": "no_counselor_turn"}


def test_the_details_quote_the_param():
    d, t = frames(dialog_rows("t:short", [("client", "你好")]))
    assert "curate.min_turns=3" in filter_reasons(d, t, CURATE)["detail"][0]


def test_require_counselor_can_be_switched_off():
    d, t = frames(dialog_rows("t:x", [("client", "一"), ("client", "二"), ("client", "三")]))
    assert filter_reasons(d, t, {**CURATE, "require_counselor": False}).is_empty()
