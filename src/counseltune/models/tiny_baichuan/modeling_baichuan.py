"""A tiny Baichuan2-7B-style causal LM (custom code loaded through trust_remote_code from a local folder).

Same module names as Baichuan2's modeling_baichuan.py (W_pack fused q/k/v, o_proj, gate/up/down_proj, RMSNorm,
rotary positions, NormHead) so the registry's LoRA targets [W_pack, o_proj] apply; written against transformers'
public Cache/generation API so it generates with a KV cache on current transformers.
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.cache_utils import DynamicCache
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from .configuration_baichuan import BaichuanConfig

try:  # transformers >= 4.52: checkpointed when gradient checkpointing is on
    from transformers.modeling_layers import GradientCheckpointingLayer as _Layer
except ImportError:  # pragma: no cover
    _Layer = nn.Module


class RMSNorm(nn.Module):
    def __init__(self, hidden_size, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.epsilon = eps

    def forward(self, hidden_states):
        variance = hidden_states.float().pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states.float() * torch.rsqrt(variance + self.epsilon)
        return self.weight * hidden_states.to(self.weight.dtype)


def _rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def _rotary(x, position_ids, theta):
    dim = x.shape[-1]
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, device=x.device, dtype=torch.float32) / dim))
    freqs = position_ids[:, None, :, None].float() * inv_freq  # [B, 1, T, dim/2]
    emb = torch.cat((freqs, freqs), dim=-1)
    return (x.float() * emb.cos() + _rotate_half(x.float()) * emb.sin()).to(x.dtype)


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.act_fn = ACT2FN[config.hidden_act]

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class Attention(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.layer_idx, self.theta = layer_idx, config.rope_theta
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // self.num_heads
        self.W_pack = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=False)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=False)

    def forward(self, hidden_states, mask, position_ids, past_key_values):
        bsz, q_len, hidden = hidden_states.shape
        q, k, v = (t.view(bsz, q_len, self.num_heads, self.head_dim).transpose(1, 2)
                   for t in self.W_pack(hidden_states).split(hidden, dim=-1))
        q, k = _rotary(q, position_ids, self.theta), _rotary(k, position_ids, self.theta)
        if past_key_values is not None:
            k, v = past_key_values.update(k, v, self.layer_idx)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(out.transpose(1, 2).reshape(bsz, q_len, hidden))


class DecoderLayer(_Layer):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.self_attn = Attention(config, layer_idx)
        self.mlp = MLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, hidden_states, mask=None, position_ids=None, past_key_values=None):
        hidden_states = hidden_states + self.self_attn(self.input_layernorm(hidden_states), mask, position_ids,
                                                       past_key_values)
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))


class BaichuanPreTrainedModel(PreTrainedModel):
    config_class = BaichuanConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["DecoderLayer"]
    _supports_sdpa = True

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(mean=0.0, std=std)
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.data.normal_(mean=0.0, std=std)
        elif isinstance(module, NormHead):
            nn.init.kaiming_uniform_(module.weight, a=5 ** 0.5)
        elif isinstance(module, RMSNorm):
            module.weight.data.fill_(1.0)


class BaichuanModel(BaichuanPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleList([DecoderLayer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, use_cache=None, **kwargs):
        hidden = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        bsz, q_len = hidden.shape[:2]
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache()
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + q_len, device=hidden.device)[None].expand(bsz, -1)
        mask = self._mask(attention_mask, bsz, q_len, past, hidden)
        for layer in self.layers:
            hidden = layer(hidden, mask, position_ids, past_key_values if use_cache else None)
        return BaseModelOutputWithPast(last_hidden_state=self.norm(hidden),
                                       past_key_values=past_key_values if use_cache else None)

    @staticmethod
    def _mask(attention_mask, bsz, q_len, past, hidden):
        """An additive [B, 1, q, past+q] mask: causal, and padded keys hidden (a 4D mask is taken as given)."""
        if attention_mask is not None and attention_mask.dim() == 4:
            return attention_mask.to(hidden.dtype)
        total = past + q_len
        allowed = torch.ones(q_len, total, dtype=torch.bool, device=hidden.device).tril(past)[None, None]
        if attention_mask is not None:
            allowed = allowed & attention_mask[:, None, None, -total:].bool()
        allowed = allowed | ~allowed.any(-1, keepdim=True)  # fully padded query rows: attend anywhere, not NaN
        zero = torch.zeros((), dtype=hidden.dtype, device=hidden.device)
        return torch.where(allowed, zero, torch.finfo(hidden.dtype).min).expand(bsz, 1, q_len, total)


class NormHead(nn.Module):
    """Baichuan2's output layer: logits against the L2-normalized embedding rows."""

    def __init__(self, hidden_size, vocab_size):
        super().__init__()
        self.weight = nn.Parameter(torch.empty((vocab_size, hidden_size)))

    def forward(self, hidden_states):
        return F.linear(hidden_states, F.normalize(self.weight))


class BaichuanForCausalLM(BaichuanPreTrainedModel, GenerationMixin):
    def __init__(self, config):
        super().__init__(config)
        self.model = BaichuanModel(config)
        self.lm_head = NormHead(config.hidden_size, config.vocab_size)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, new_embeddings):
        self.lm_head = new_embeddings

    # The hub code's signature: no `logits_to_keep` (2023 remote code), so callers get full logits, as with the
    # real Baichuan2 (train/loss.py then falls back to the model's own loss).
    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, **kwargs):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         past_key_values=past_key_values, inputs_embeds=inputs_embeds, use_cache=use_cache)
        hidden = out.last_hidden_state
        logits = self.lm_head(hidden).float()
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                   ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=out.past_key_values)
