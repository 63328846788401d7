"""A tiny Baichuan2-style config: the custom-code half of a rehearsal model that loads only with trust_remote_code.

Copied next to config.json (auto_map points here); kept to the fields Baichuan2-7B's own config has.
"""

from transformers import PretrainedConfig


class BaichuanConfig(PretrainedConfig):
    model_type = "baichuan"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(self, vocab_size=125696, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                 num_attention_heads=32, hidden_act="silu", model_max_length=4096, initializer_range=0.02,
                 rms_norm_eps=1e-6, rope_theta=10000.0, use_cache=True, pad_token_id=0, bos_token_id=1,
                 eos_token_id=2, user_token_id=195, assistant_token_id=196, tie_word_embeddings=False, **kwargs):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.hidden_act = hidden_act
        self.model_max_length = model_max_length
        self.max_position_embeddings = model_max_length  # what generic code reads for the context length
        self.initializer_range = initializer_range
        self.rms_norm_eps = rms_norm_eps
        self.rope_theta = rope_theta
        self.use_cache = use_cache
        self.user_token_id = user_token_id
        self.assistant_token_id = assistant_token_id
        super().__init__(pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
                         tie_word_embeddings=tie_word_embeddings, **kwargs)
