"""Text metrics: per-language tokenization, BLEU/ROUGE agreement with sacrebleu and rouge-score, conventions."""

from __future__ import annotations

import math
import warnings

import pytest
import sacrebleu
from rouge_score.rouge_scorer import RougeScorer

from counseltune.evaluate.text_metrics import (
    LLAMAFACTORY_CONVENTION,
    corpus_scores,
    distinct_n,
    score,
    score_pairs,
)
from counseltune.evaluate.tokenize import (
    BLEU_TOKENIZERS,
    char_tokens,
    jieba_tokens,
    rouge_tokenizer,
)

SENTENCES = {
    # one space, so that the 'whitespace' option sees two tokens and has a bigram to match
    "zh": "我最近工作压力很大， 晚上总是睡不好。",
    "ko": "요즘 일이 너무 많아서 밤에 잠을 잘 못 자요.",
    "en": "I have been under a lot of pressure at work and I cannot sleep at night.",
}
PAIRS = {
    "zh": (["我很难过", "你最近睡得怎么样？", "我们可以一起想想办法。", "好"], ["我很伤心", "你最近睡眠怎么样？", "我们一起想办法吧。", "好的"]),
    "ko": (["요즘 많이 힘드셨겠어요.", "잠은 잘 주무세요?", "네"], ["요즘 정말 힘드셨겠네요.", "잠은 어떠세요?", "네 맞아요"]),
    "en": (["That sounds really hard.", "How are you sleeping these days?", "ok"], ["That sounds very difficult.", "How have you been sleeping?", "okay then"]),
}


@pytest.mark.parametrize("convention", ["standard", "llamafactory"])
@pytest.mark.parametrize("rouge_option", ["char", "jieba", "whitespace"])
@pytest.mark.parametrize("language", ["zh", "ko", "en"])
def test_identical_strings_score_full_bleu_and_rouge_under_every_tokenizer(language, rouge_option, convention):
    text = SENTENCES[language]
    rows, corpus = score([text, text], [text, text], language, rouge_option, convention)
    top_rouge = 100.0 if convention == "llamafactory" else 1.0
    for result in (*rows, corpus):
        assert result["bleu"] == pytest.approx(100.0)
        for key in ("rouge1", "rouge2", "rougeL"):
            assert result[key] == pytest.approx(top_rouge)


def test_whitespace_rouge_treats_unspaced_chinese_as_one_token():
    # 'whitespace' is for pre-segmented text: a Chinese sentence without spaces is a single token, no bigrams
    row = score_pairs(["我很难过。"], ["我很难过。"], "zh", rouge_tokenizer="whitespace")[0]
    assert (row["hyp_tokens"], row["rouge1"], row["rouge2"], row["rougeL"]) == (1, 1.0, 0.0, 1.0)


def test_rouge_score_default_tokenizer_zeroes_chinese_and_ours_does_not():
    text = SENTENCES["zh"]
    default = RougeScorer(["rouge1", "rougeL"]).score(text, text)
    assert default["rouge1"].fmeasure == 0.0  # the trap: every non-ASCII character is deleted
    ours = RougeScorer(["rouge1", "rougeL"], tokenizer=rouge_tokenizer("zh", "char")).score(text, text)
    assert ours["rouge1"].fmeasure == 1.0 and ours["rougeL"].fmeasure == 1.0


@pytest.mark.parametrize("convention", ["standard", "llamafactory"])
@pytest.mark.parametrize("language", ["zh", "ko", "en"])
def test_empty_hypothesis_scores_zero_without_crashing(language, convention):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows, corpus = score(["", SENTENCES[language]], [SENTENCES[language], SENTENCES[language]], language, convention=convention)
    assert {k: rows[0][k] for k in ("bleu", "rouge1", "rouge2", "rougeL", "hyp_tokens", "hyp_chars")} == dict.fromkeys(
        ("bleu", "rouge1", "rouge2", "rougeL", "hyp_tokens", "hyp_chars"), 0
    )
    assert corpus["n"] == 2


def test_char_and_jieba_rouge_differ_as_computed_by_hand():
    # char: 我 很 难 过 vs 我 很 伤 心 -> 2 of 4 unigrams, 1 of 3 bigrams (我很), LCS 2
    char = score_pairs(["我很难过"], ["我很伤心"], "zh", rouge_tokenizer="char")[0]
    assert (char["rouge1"], char["rouge2"], char["rougeL"]) == pytest.approx((0.5, 1 / 3, 0.5))
    # jieba: 我 很 难过 vs 我 很 伤心 -> 2 of 3 unigrams, 1 of 2 bigrams, LCS 2
    assert jieba_tokens("我很难过") == ("我", "很", "难过")
    jieba = score_pairs(["我很难过"], ["我很伤心"], "zh", rouge_tokenizer="jieba")[0]
    assert (jieba["rouge1"], jieba["rouge2"], jieba["rougeL"]) == pytest.approx((2 / 3, 0.5, 2 / 3))
    assert (char["hyp_tokens"], jieba["hyp_tokens"]) == (4, 3)


def test_llamafactory_convention_on_a_hand_checked_pair():
    rows, corpus = score(["我很难过"], ["我很伤心"], "zh", convention="llamafactory")
    # character BLEU-4: p1 = 2/4, p2 = 1/3; p3, p4 have no match, method3 gives 1/(2*2) and 1/(4*1); no brevity penalty
    expected_bleu = 100 * (0.5 * (1 / 3) * 0.25 * 0.25) ** 0.25
    assert rows[0]["bleu"] == round(expected_bleu, 4) == 31.9472  # LLaMA-Factory rounds each item to 4 decimals
    assert (rows[0]["rouge1"], rows[0]["rouge2"], rows[0]["rougeL"]) == pytest.approx((200 / 3, 50.0, 200 / 3), abs=1e-4)
    assert corpus["bleu"] == 31.9472
    assert corpus["convention"] == rows[0]["convention"] == LLAMAFACTORY_CONVENTION


def test_llamafactory_rouge_keeps_punctuation_as_jieba_tokens():
    # LLaMA-Factory scores " ".join(jieba.cut(text)): punctuation stays a token, whitespace does not
    row = score_pairs(["我很难过。"], ["我很难过"], "zh", convention="llamafactory")[0]
    assert row["hyp_tokens"] == 4 and row["rouge1"] == pytest.approx(100 * 2 * 0.75 / 1.75, abs=1e-4)


@pytest.mark.parametrize("language", ["zh", "ko", "en"])
def test_sentence_and_corpus_bleu_equal_sacrebleu(language):
    hyps, refs = PAIRS[language]
    tokenize = BLEU_TOKENIZERS[language]
    rows, corpus = score(hyps, refs, language)
    for row, h, r in zip(rows, hyps, refs):
        assert row["bleu"] == pytest.approx(sacrebleu.sentence_bleu(h, [r], tokenize=tokenize).score, abs=1e-9)
    assert corpus["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], tokenize=tokenize).score, abs=1e-9)
    assert corpus["bleu_tokenizer"] == tokenize
    assert f"tok:{tokenize}" in corpus["bleu_signature"]


def test_corpus_bleu_of_sub_four_token_text_is_zero_like_sacrebleu():
    # corpus BLEU has no effective order: without any 4-gram it is 0 even for identical text
    rows, corpus = score(["好的"], ["好的"], "zh")
    assert corpus["bleu"] == sacrebleu.corpus_bleu(["好的"], [["好的"]], tokenize="zh").score == 0.0
    assert rows[0]["bleu"] == pytest.approx(100.0)  # sentence BLEU uses the effective order


@pytest.mark.parametrize("rouge_option", ["char", "jieba", "whitespace"])
@pytest.mark.parametrize("language", ["zh", "ko", "en"])
def test_rouge_equals_rouge_score_with_the_same_tokenizer(language, rouge_option):
    hyps, refs = PAIRS[language]
    scorer = RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=rouge_tokenizer(language, rouge_option))
    for row, h, r in zip(score_pairs(hyps, refs, language, rouge_option), hyps, refs):
        expected = scorer.score(r, h)
        for key in ("rouge1", "rouge2", "rougeL"):
            assert row[key] == pytest.approx(expected[key].fmeasure, abs=1e-12)


def test_rouge_l_equals_rouge_score_on_long_repetitive_sequences():
    hyp = "我们我们可以一起想想办法，你觉得呢？我们可以慢慢来。" * 3
    ref = "你觉得我们一起想办法怎么样？慢慢来，我们可以的。" * 4
    expected = RougeScorer(["rougeL"], tokenizer=rouge_tokenizer("zh", "char")).score(ref, hyp)["rougeL"].fmeasure
    assert score_pairs([hyp], [ref], "zh")[0]["rougeL"] == pytest.approx(expected, abs=1e-12)


def test_distinct_n_on_a_hand_example():
    tokens = [["a", "b", "a"], ["a", "b", "c"]]
    assert distinct_n(tokens, 1) == pytest.approx(3 / 6)  # a b c out of 6
    assert distinct_n(tokens, 2) == pytest.approx(3 / 4)  # ab ba bc out of ab ba ab bc
    assert distinct_n([[]], 2) == 0.0
    corpus = corpus_scores(["我很好", "我很累"], ["-", "-"], "zh")
    assert (corpus["distinct1"], corpus["distinct2"]) == pytest.approx((4 / 6, 3 / 4))


def test_char_tokens_split_cjk_and_hangul_keep_words_and_drop_punctuation():
    assert char_tokens("我很OK，Thanks! 안녕하세요 v2") == ("我", "很", "ok", "thanks", "안", "녕", "하", "세", "요", "v2")


def test_corpus_result_names_convention_tokenizers_and_lengths():
    corpus = corpus_scores(*PAIRS["ko"], "ko", rouge_tokenizer="whitespace")
    assert corpus["bleu_tokenizer"] == "char"  # no ko-mecab here
    assert corpus["rouge_tokenizer"] == "whitespace"
    assert "tokenize=char" in corpus["convention"] and corpus["convention_name"] == "standard"
    assert corpus["hyp_tokens_mean"] == pytest.approx((3 + 3 + 1) / 3)
    english = corpus_scores(*PAIRS["en"], "en", rouge_tokenizer="jieba")
    assert english["rouge_tokenizer"].startswith("rouge-score default")
    assert math.isfinite(english["sentence_bleu_mean"]) and "exp" in english["sentence_bleu_smoothing"]


def test_unknown_settings_and_mismatched_inputs_are_rejected():
    with pytest.raises(ValueError, match="language"):
        score_pairs(["a"], ["a"], "ja")
    with pytest.raises(ValueError, match="rouge_tokenizer"):
        score_pairs(["a"], ["a"], "zh", rouge_tokenizer="mecab")
    with pytest.raises(ValueError, match="convention"):
        score_pairs(["a"], ["a"], "zh", convention="nlg-eval")
    with pytest.raises(ValueError, match="references"):
        score_pairs(["a", "b"], ["a"], "zh")
