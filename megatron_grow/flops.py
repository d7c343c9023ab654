"""Parameter counts and model FLOPs, from the config alone (no model needed).

Training FLOPs of an iteration = 3 x forward FLOPs (backward costs twice the forward):
forward per token = 2 x (matmul parameters, the LM head included) + attention's sequence term
4 x seq x heads x head_dim per layer (scores Q K^T and the weighted sum of V, no causal
discount, as in Megatron-LM). Embedding lookups and norms are not matmuls and are not counted.
"""

from __future__ import annotations

from megatron_grow.models import FAMILIES, padded_vocab_size


def _dims(cfg):
    fam = FAMILIES[cfg.model]
    kv = cfg.kv_channels or cfg.hidden_size // cfg.num_attention_heads
    groups = cfg.num_query_groups or cfg.num_attention_heads
    return fam, kv, groups


def layer_matmul_params(cfg) -> int:
    """Weights of one transformer layer's matmuls (QKV, output projection, MLP)."""
    fam, kv, groups = _dims(cfg)
    h, f, n = cfg.hidden_size, cfg.ffn_hidden_size, cfg.num_attention_heads
    qkv = h * (n + 2 * groups) * kv
    proj = n * kv * h
    mlp = h * f * (3 if fam["gated_linear_unit"] else 2)
    return qkv + proj + mlp


def param_count(cfg, embeddings: bool = True) -> int:
    """Total parameters of the full model (vocab padded as built); embeddings=False leaves out the
    token/position embeddings and an untied head."""
    fam, kv, groups = _dims(cfg)
    h, f, n, L = cfg.hidden_size, cfg.ffn_hidden_size, cfg.num_attention_heads, cfg.num_layers
    norm = 2 * h if fam["normalization"] == "LayerNorm" else h
    per_layer = layer_matmul_params(cfg) + 2 * norm
    if fam["add_bias_linear"]:
        per_layer += (n + 2 * groups) * kv + h + f * (2 if fam["gated_linear_unit"] else 1) + h
    total = L * per_layer + norm
    if embeddings:
        V = padded_vocab_size(cfg.vocab_size)
        total += V * h * (1 if fam["tied_embeddings"] else 2)
        if fam["position_embedding_type"] == "learned_absolute":
            total += cfg.max_position_embeddings * h
    return total


def forward_flops_per_token(cfg) -> int:
    _, kv, _ = _dims(cfg)
    head = padded_vocab_size(cfg.vocab_size) * cfg.hidden_size
    attn = 4 * cfg.seq_length * cfg.num_attention_heads * kv
    return 2 * (cfg.num_layers * layer_matmul_params(cfg) + head) + cfg.num_layers * attn


def train_flops(cfg, tokens: int) -> int:
    """Model FLOPs of training on ``tokens`` tokens (forward + backward)."""
    return 3 * forward_flops_per_token(cfg) * tokens
