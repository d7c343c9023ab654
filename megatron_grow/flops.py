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

MoE models (deepseek-v3) count active parameters in the FLOPs and 6N conventions: the router,
the top-k routed experts and the shared expert of each MoE layer (``param_count(cfg)`` without
``active`` gives the total, every expert included, as the model summary prints it). Multi-latent
attention counts its low-rank q / kv projections, and its attention term uses the q/k head size
(nope + rope dims) for Q K^T and the v head size for the weighted sum.

A run's cumulative ledger (FLOPs in each convention, tokens, training seconds) lives in its State,
goes into the metrics stream with every logged iteration and into every checkpoint, so resumed
and grown runs continue it.
"""

from __future__ import annotations

from megatron_grow.models import FAMILIES, layer_kinds, padded_vocab_size, tied_embeddings

CONVENTIONS = ("flops", "flops_6n", "flops_6n_nonemb")


def _dims(cfg):
    fam = FAMILIES[cfg.model]
    kv = cfg.kv_channels or cfg.hidden_size // cfg.num_attention_heads
    groups = cfg.num_query_groups or cfg.num_attention_heads
    return fam, kv, groups


def _attention_params(cfg) -> int:
    fam, kv, groups = _dims(cfg)
    h, n = cfg.hidden_size, cfg.num_attention_heads
    if not fam.get("multi_latent_attention"):
        return h * (n + 2 * groups) * kv + n * kv * h  # QKV, output projection
    dq = cfg.qk_head_dim + cfg.qk_pos_emb_head_dim
    q = (h * cfg.q_lora_rank + cfg.q_lora_rank * n * dq) if cfg.q_lora_rank else h * n * dq
    kv_down = h * (cfg.kv_lora_rank + cfg.qk_pos_emb_head_dim)
    kv_up = cfg.kv_lora_rank * n * (cfg.qk_head_dim + cfg.v_head_dim)
    return q + kv_down + kv_up + n * cfg.v_head_dim * h


def _mlp_params(cfg, kind: str, active: bool) -> int:
    per_unit = 3 if FAMILIES[cfg.model]["gated_linear_unit"] else 2  # weights per hidden x ffn unit
    h = cfg.hidden_size
    if kind == "dense":
        return per_unit * h * cfg.ffn_hidden_size
    experts = cfg.moe_router_topk if active else cfg.num_experts
    return h * cfg.num_experts + per_unit * h * (experts * cfg.moe_ffn_hidden_size
                                                 + (cfg.moe_shared_expert_intermediate_size or 0))


def layer_matmul_params(cfg, kind: str = "dense", active: bool = True) -> int:
    """Weights of one transformer layer's matmuls (attention projections, MLP; for an MoE layer
    the router and the experts, the active ones only when ``active``)."""
    return _attention_params(cfg) + _mlp_params(cfg, kind, active)


def param_count(cfg, embeddings: bool = True, active: bool = False) -> int:
    """Parameters of the full model (vocab padded as built); embeddings=False leaves out the
    token/position embeddings and an untied head; active=True counts only each MoE layer's active
    experts (top-k routed + shared)."""
    fam, kv, groups = _dims(cfg)
    h, f, n = cfg.hidden_size, cfg.ffn_hidden_size, cfg.num_attention_heads
    norm = 2 * h if fam["normalization"] == "LayerNorm" else h
    per_layer = 2 * norm
    if fam.get("multi_latent_attention"):  # q / kv latent norms
        per_layer += (cfg.q_lora_rank or 0) + cfg.kv_lora_rank
    if fam["add_bias_linear"]:
        per_layer += (n + 2 * groups) * kv + h + f * (2 if fam["gated_linear_unit"] else 1) + h
    total = sum(per_layer + layer_matmul_params(cfg, k, active) for k in layer_kinds(cfg, cfg.num_layers)) + norm
    if embeddings:
        V = padded_vocab_size(cfg.vocab_size)
        total += V * h * (1 if tied_embeddings(cfg) else 2)
        if fam["position_embedding_type"] == "learned_absolute":
            total += cfg.max_position_embeddings * h
    return total


def forward_flops_per_token(cfg) -> int:
    fam, kv, _ = _dims(cfg)
    head = padded_vocab_size(cfg.vocab_size) * cfg.hidden_size
    # causal: half of 2 s n (d_qk + d_v)
    dqk, dv = (cfg.qk_head_dim + cfg.qk_pos_emb_head_dim, cfg.v_head_dim) if fam.get("multi_latent_attention") \
        else (kv, kv)
    attn = cfg.seq_length * cfg.num_attention_heads * (dqk + dv)
    weights = sum(layer_matmul_params(cfg, k, active=True) for k in layer_kinds(cfg, cfg.num_layers))
    return 2 * (weights + head) + cfg.num_layers * attn


def train_flops(cfg, tokens: int) -> int:
    """Exact model FLOPs of training on ``tokens`` tokens (forward + backward)."""
    return 3 * forward_flops_per_token(cfg) * tokens


def ledger(cfg, tokens: int) -> dict:
    """FLOPs of training ``cfg``'s model on ``tokens`` tokens, in each convention."""
    return {"flops": train_flops(cfg, tokens), "flops_6n": 6 * param_count(cfg, active=True) * tokens,
            "flops_6n_nonemb": 6 * param_count(cfg, embeddings=False, active=True) * tokens}


def empty_ledger() -> dict:
    """A run's cumulative ledger before its first iteration."""
    return {**{"cum_" + k: 0 for k in CONVENTIONS}, "cum_tokens": 0, "train_seconds": 0.0}


def add(total: dict, per_iter: dict, tokens: int, seconds: float) -> None:
    """Account one iteration (or growth's ``seconds`` with no tokens) in the cumulative ledger."""
    for k in CONVENTIONS:
        total["cum_" + k] += per_iter.get(k, 0)
    total["cum_tokens"] += tokens
    total["train_seconds"] += seconds


# Dense peak matmul throughput per GPU, FLOP/s (SXM parts; NVIDIA's datasheets, without sparsity).
# "tf32" is what fp32 training gets when matmuls run in TF32 (torch.backends.cuda.matmul.allow_tf32).
PEAK_FLOPS = {
    "A100": {"bf16": 312e12, "tf32": 156e12, "fp32": 19.5e12},
    "H100": {"bf16": 989e12, "fp8": 1979e12, "tf32": 495e12, "fp32": 67e12},
    "H200": {"bf16": 989e12, "fp8": 1979e12, "tf32": 495e12, "fp32": 67e12},
}


def peak_flops(device_name: str, precision: str) -> float | None:
    """Peak FLOP/s of one GPU named ``device_name`` (torch.cuda.get_device_name) at ``precision``;
    None for a GPU or precision not in PEAK_FLOPS (and for CPUs)."""
    gpu = next((g for g in PEAK_FLOPS if g in device_name.upper()), None)
    return PEAK_FLOPS[gpu].get(precision) if gpu else None


def mfu(flops_per_iter: float, seconds: float, devices: int, peak: float) -> float:
    """Model FLOPs utilisation: the exact model FLOPs of one iteration (``ledger()["flops"]``) over
    what ``devices`` GPUs at ``peak`` FLOP/s each could do in the iteration's ``seconds``."""
    return flops_per_iter / (seconds * devices * peak)
