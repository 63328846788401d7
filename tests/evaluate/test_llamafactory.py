"""The llamafactory convention against an independent reimplementation of LLaMA-Factory's ComputeSimilarity.

The reference below is written from the semantics of LLaMA-Factory's src/llamafactory/train/sft/metric.py and
rouge-chinese 1.0.3's rouge.py / rouge_score.py (Rouge() defaults), without importing rouge_chinese or nltk:
- ROUGE: jieba.cut of both texts joined by spaces; rouge_chinese's sentence cut (its four regexes, rstrip, split on
  newlines, sentences of length 0 dropped, each sentence's whitespace runs collapsed, then split on single spaces,
  so a whitespace-only sentence leaves one empty word); ROUGE-N over the SET of n-grams (each distinct n-gram
  once); ROUGE-L = LCS of the flattened word lists; F = 2PR / (P + R + 1e-8); 0 when either text has no
  non-whitespace token.
- BLEU-4: nltk sentence_bleu over characters: clipped n-gram precision with denominator max(1, n-grams),
  0 without any unigram match, method3 smoothing (the k-th order without matches gets 1 / (2^k * denominator)),
  brevity penalty exp(1 - r/c) for 0 < c <= r, 0 for c = 0.
- x100, each item rounded to 4 decimals.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter

import jieba
import pytest

from counseltune.evaluate.text_metrics import corpus_scores, score_pairs

FRAGMENTS = {
    "zh": ["我很难过", "我很难过", "听起来你最近压力很大", "能多说说吗？", "好的好的好的", "嗯。", "你觉得呢?",
           "他说：“我不想去了。”", "然后呢……", "这......我不知道", "谢谢！", "我们一起想想可以做些什么。", "睡不着",
           "OK, 我明白", "压力 压力 压力", "“真的吗？”他问", "是的", "。", "？"],
    "en": ["It sounds like work has been really stressful.", "I hear you.", "I hear you.", "What would you like to change?",
           "you you you", "Okay...... so", "Right?", "Tell me more!", "that's hard.", "\u201cI can't,\u201d she said.",
           "Yes. Yes. Yes.", "How important is this to you?", "hmm", "..."],
    "ko": ["요즘 많이 힘드셨겠어요.", "더 말씀해 주시겠어요?", "네 네 네", "괜찮아요!", "그렇군요……", "왜요?",
           "힘들다 힘들다", "오늘은 어땠어요。", "음......", "좋아요", "“정말요?”라고 물었어요", "스트레스가 많아요"],
}
SEPARATORS = ["", " ", "\n", "\n\n", "  ", "\t", " \n ", "。", "!", "? "]
EDGE_PAIRS = [
    ("", "我很难过"), ("我很难过", ""), ("", ""), ("   ", "我很难过"), ("\n\n", "\n"), ("。", "。"), ("。。。", "。"),
    ("好的好的好的好的", "好的"), ("好的", "好的好的好的好的"), ("a", "a"), ("I", "I hear you."),
    ("......", "......"), ("……", "……真的"), ("你好。\n\n谢谢", "你好。 谢谢"), ("네 네 네 네", "네"),
    ("“好。”“好。”", "好。好。"), ("?", "?"), ("hi\n \nhi", "hi hi"), ("同样的话。同样的话。同样的话。", "同样的话。"),
]


def reference_pairs(language: str, n_random: int = 60, seed: int = 14) -> list[tuple[str, str]]:
    """Seeded pairs of one language: fragments (with repeats) glued by mixed punctuation and newlines, plus edge cases."""
    rng = random.Random(f"{seed}-{language}")
    pairs = list(EDGE_PAIRS)
    fragments = FRAGMENTS[language]
    for i in range(n_random):

        def text() -> str:
            parts = [rng.choice(fragments) for _ in range(rng.randint(0, 5))]
            return "".join(p + rng.choice(SEPARATORS) for p in parts)

        hyp, ref = text(), text()
        if i % 7 == 0:  # a hypothesis that repeats part of its reference
            hyp = (ref[: max(1, len(ref) // 2)] + rng.choice(SEPARATORS)) * rng.randint(2, 4)
        pairs.append((hyp, ref))
    return pairs


# ---- independent reimplementation ----------------------------------------------------------------------------


def rouge_chinese_words(text: str) -> list[str]:
    """rouge_chinese's words of a text: cut_sent, drop empty sentences, collapse whitespace, split on ' '."""
    cut = re.sub("([。！？?])([^”’])", "\\1\n\\2", text)
    cut = re.sub("(\\.{6})([^”’])", "\\1\n\\2", cut)
    cut = re.sub("(…{2})([^”’])", "\\1\n\\2", cut)
    cut = re.sub("([。！？?][”’])([^，。！？?])", "\\1\n\\2", cut)
    words: list[str] = []
    for sentence in cut.rstrip().split("\n"):
        if sentence:
            words.extend(" ".join(sentence.split()).split(" "))
    return words


def f_score(overlap: int, n_hyp: int, n_ref: int) -> float:
    precision = overlap / n_hyp if n_hyp else 0.0
    recall = overlap / n_ref if n_ref else 0.0
    return 2.0 * precision * recall / (precision + recall + 1e-8)


def distinct_ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def lcs_length(a: list[str], b: list[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def reference_rouge(prediction: str, label: str) -> dict[str, float]:
    hyp_joined, ref_joined = " ".join(jieba.cut(prediction)), " ".join(jieba.cut(label))
    if not hyp_joined.split() or not ref_joined.split():
        return {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    hyp, ref = rouge_chinese_words(hyp_joined), rouge_chinese_words(ref_joined)
    out = {}
    for n in (1, 2):
        h, r = distinct_ngrams(hyp, n), distinct_ngrams(ref, n)
        out[f"rouge{n}"] = round(100 * f_score(len(h & r), len(h), len(r)), 4)
    out["rougeL"] = round(100 * f_score(lcs_length(ref, hyp), len(hyp), len(ref)), 4)
    return out


def reference_bleu(prediction: str, label: str) -> float:
    hyp, ref = list(prediction), list(label)
    precisions = []
    for n in range(1, 5):
        hyp_grams = Counter(tuple(hyp[i : i + n]) for i in range(len(hyp) - n + 1))
        ref_grams = Counter(tuple(ref[i : i + n]) for i in range(len(ref) - n + 1))
        matches = sum(min(count, ref_grams[g]) for g, count in hyp_grams.items())
        precisions.append((matches, max(1, sum(hyp_grams.values()))))
    if precisions[0][0] == 0:
        return 0.0
    k, log_sum = 1, 0.0
    for matches, total in precisions:
        if matches == 0:
            p, k = 1 / (2**k * total), k + 1
        else:
            p = matches / total
        log_sum += 0.25 * math.log(p)
    c, r = len(hyp), len(ref)
    brevity = 1.0 if c > r else (0.0 if c == 0 else math.exp(1 - r / c))
    return round(100 * brevity * math.exp(log_sum), 4)


# ---- tests -----------------------------------------------------------------------------------------------------


def test_reference_reimplementation_on_hand_checked_pairs():
    # jieba: 好 的 好 的 好 的 vs 好 的. Distinct unigrams {好, 的} both matched: F = 100 (rouge-score: 50).
    # Distinct bigrams {好的, 的好} vs {好的}: P = 1/2, R = 1, F = 66.6667 (rouge-score: 40). LCS 2: P = 2/6, R = 1.
    assert reference_rouge("好的好的好的", "好的") == {"rouge1": 100.0, "rouge2": 66.6667, "rougeL": 50.0}
    # a whitespace-only sentence between two cut points leaves one empty word
    assert rouge_chinese_words("你好 。 \n\n 谢谢") == ["你好", "。", "", "谢谢"]
    assert reference_bleu("我很难过", "我很伤心") == 31.9472


@pytest.mark.parametrize("language", ["zh", "en", "ko"])
def test_llamafactory_convention_equals_the_reimplementation_item_for_item(language):
    pairs = reference_pairs(language)  # 79 per language, 237 in all
    hyps, refs = [h for h, _ in pairs], [r for _, r in pairs]
    rows = score_pairs(hyps, refs, language, convention="llamafactory")
    for (hyp, ref), row in zip(pairs, rows):
        expected = {**reference_rouge(hyp, ref), "bleu": reference_bleu(hyp, ref)}
        got = {k: row[k] for k in expected}
        assert got == pytest.approx(expected, abs=0.01), (hyp, ref)
    corpus = corpus_scores(hyps, refs, language, convention="llamafactory")
    assert corpus["rouge1"] == pytest.approx(sum(reference_rouge(h, r)["rouge1"] for h, r in pairs) / len(pairs))


def test_repeated_ngrams_are_counted_once_unlike_rouge_score():
    row = score_pairs(["压力 压力 压力 压力"], ["压力"], "zh", convention="llamafactory")[0]
    assert row["rouge1"] == pytest.approx(100.0, abs=1e-4)  # rouge-score (clipped counts) would give 2*(1/4)/(5/4) = 40
