"""A tiny Baichuan2-style tokenizer class: custom code like Baichuan2's own (loads only with trust_remote_code).

Baichuan2 ships a SentencePiece tokenizer class; this one wraps a fast BPE file, which is all a rehearsal needs.
Like Baichuan2's, it adds no bos/eos when encoding.
"""

from transformers import PreTrainedTokenizerFast


class BaichuanTokenizer(PreTrainedTokenizerFast):
    model_input_names = ["input_ids", "attention_mask"]
