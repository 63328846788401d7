"""LLaMA-Factory's text-similarity numbers, item for item (src/llamafactory/train/sft/metric.py, ComputeSimilarity).

Per (prediction, label) pair, as LLaMA-Factory does it:
- ROUGE-1/2/L: jieba.cut of both texts, joined by spaces, scored by rouge_chinese's Rouge() with its defaults
  (each distinct n-gram counted once, its own sentence cut, ROUGE-L = LCS over all words); 0 for all three when
  either side has no non-whitespace token; the F score x100, rounded to 4 decimals.
- BLEU-4: nltk sentence_bleu over the characters of the raw texts (whitespace included), smoothing method3,
  x100, rounded to 4 decimals.
The corpus numbers are the plain means of these item scores.
"""

from __future__ import annotations

import warnings

from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from rouge_chinese import Rouge

from counseltune.evaluate.tokenize import jieba_cut

NAME = "llamafactory"
ROUGE_KEYS = {"rouge-1": "rouge1", "rouge-2": "rouge2", "rouge-l": "rougeL"}
ROUGE_IMPLEMENTATION = "rouge-chinese 1.0.3 Rouge() defaults (distinct n-grams counted once, its sentence cut)"
ROUGE_TOKENS = "jieba.cut joined by spaces (punctuation and newlines kept)"
BLEU_TOKENS = "characters (list(text), whitespace included)"
BLEU_KIND = "mean of nltk sentence BLEU-4 x100 (SmoothingFunction().method3)"
DESCRIPTION = (
    f"{NAME}: LLaMA-Factory ComputeSimilarity, item for item: BLEU-4 = {BLEU_KIND} over {BLEU_TOKENS}; "
    f"ROUGE-1/2/L F x100 = {ROUGE_IMPLEMENTATION} over {ROUGE_TOKENS}; each item rounded to 4 decimals, then means"
)

_SMOOTHING = SmoothingFunction().method3


def item_scores(prediction: str, label: str) -> dict[str, float]:
    """One pair -> {'bleu', 'rouge1', 'rouge2', 'rougeL'} exactly as LLaMA-Factory appends them to its score_dict."""
    hypothesis, reference = jieba_cut(prediction), jieba_cut(label)
    if not " ".join(hypothesis).split() or not " ".join(reference).split():
        rouge = {key: 0.0 for key in ROUGE_KEYS.values()}
    else:
        result = Rouge().get_scores(" ".join(hypothesis), " ".join(reference))[0]
        rouge = {ROUGE_KEYS[k]: round(v["f"] * 100, 4) for k, v in result.items()}
    with warnings.catch_warnings():  # nltk warns on texts shorter than 4 characters; the score is still defined
        warnings.simplefilter("ignore")
        bleu = sentence_bleu([list(label)], list(prediction), smoothing_function=_SMOOTHING)
    return {"bleu": round(bleu * 100, 4), **rouge}
