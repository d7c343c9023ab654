"""Parameter counts, model FLOPs and the compute ledger, from the config alone (no model needed).

Three conventions, each for training (forward + backward = 3 x forward):

* ``flops``: exact matmul FLOPs: 2 x (matmul weights, the LM head included) per token, plus
  attention's sequence term, with the causal mask counted as Megatron-LM counts it (half of the
  score matrix): Q K^T and the weighted sum of V cost 2 x heads x head_dim x seq per token and
  layer. Embedding lookups, norms, softmax and activations are not matmuls and are not counted.
* ``flops_6n``: 6 x N x tokens, N = all parameters (embeddings, positions and an untied head
  included; a tied head once): the paper's "FLOPs = 6 x tokens x N" with total parameters.
* ``flops_6n_nonemb``: the same with N = non-embedding parameters (Kaplan et al.: no token or
  position embeddings, no untied head).

A run's cumulative ledger (FLOPs in each convention, tokens, training seconds) lives in its State,
goes into the metrics stream with every logged iteration and into every checkpoint, so resumed
and grown runs continue it.
"""

from __future__ import annotations

from megatron_grow.models import FAMILIES, padded_vocab_size

CONVENTIONS = ("flops", "flops_6n", "flops_6n_nonemb")


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
    attn = 2 * cfg.seq_length * cfg.num_attention_heads * kv  # causal: half of 4 s n d
    return 2 * (cfg.num_layers * layer_matmul_params(cfg) + head) + cfg.num_layers * attn


def train_flops(cfg, tokens: int) -> int:
    """Exact model FLOPs of training on ``tokens`` tokens (forward + backward)."""
    return 3 * forward_flops_per_token(cfg) * tokens


def ledger(cfg, tokens: int) -> dict:
    """FLOPs of training ``cfg``'s model on ``tokens`` tokens, in each convention."""
    return {"flops": train_flops(cfg, tokens), "flops_6n": 6 * param_count(cfg) * tokens,
            "flops_6n_nonemb": 6 * param_count(cfg, embeddings=False) * tokens}


def empty_ledger() -> dict:
    """A run's cumulative ledger before its first iteration."""
    return {**{"cum_" + k: 0 for k in CONVENTIONS}, "cum_tokens": 0, "train_seconds": 0.0}


def add(total: dict, per_iter: dict, tokens: int, seconds: float) -> None:
    """Account one iteration (or growth's ``seconds`` with no tokens) in the cumulative ledger."""
    for k in CONVENTIONS:
        total["cum_" + k] += per_iter.get(k, 0)
    total["cum_tokens"] += tokens
    total["train_seconds"] += seconds
