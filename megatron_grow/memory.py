"""Per-GPU memory of a configuration, from the config alone (no model, no GPU): weights, gradients,
optimizer state, activations, for every pipeline stage; the largest micro-batch that fits.

What each term counts (bytes on the most loaded rank of each pipeline stage):

* weights: the stage's parameters on one TP (and EP) rank, in bf16 or fp32;
* grads: megatron DDP's gradient buffer, fp32 (grad_reduce_in_fp32);
* optimizer: AdamW's two moments (8 B / param), Muon-NSGD's momentum (4 B), plus fp32 master
  copies (4 B) when the weights are bf16; divided by DP with --use-distributed-optimizer;
* activations: what autograd saves for backward, per micro-batch, times the micro-batches in
  flight (1F1B: stage i of PP holds min(PP - i, micro-batches) of them), as this code builds the
  layers. Counted tensor by tensor from megatron-core's local layer path (SDPA core attention,
  torch norms, megatron's MLP and MoE; tests/test_memory.py checks the count against the tensors
  autograd actually saves): per token of one layer, RMSNorm saves its input, 1/rms and the
  normalised input; LayerNorm its input and two statistics; each linear its input; core attention
  q, k, v (the fused QKV output while one of them is a view of it, K/V repeated to the query heads
  under GQA), its output and log-sum-exp (MLA, whose q/k and v head sizes differ, runs SDPA's math
  path and also keeps the attention probabilities, heads x seq per token); a SwiGLU MLP its fc1
  output (2 f), silu(gate), the linear half and the product (5 f in all), a GeLU MLP 2 f; an MoE
  layer the permuted tokens (top-k x h) and per routed token the expert's 6 f_e + its probability,
  the shared expert like a dense SwiGLU MLP, the router's scores. Terms outside attention and MLP
  (norms, linear inputs) are split over TP only with sequence parallelism; the LM head keeps the
  fp32 logits of its vocab shard (s x b x V / TP);
* recomputation: full keeps each recomputed chunk's input and rebuilds one chunk in backward;
  selective drops the saved tensors of the recomputed modules;
* backward peak, on top of the saved layers: the head's saved tensors with the largest weight's
  gradient (before megatron DDP adds it to the fp32 buffer), or a recomputed chunk, whichever is
  larger, plus two hidden-sized gradients in flight.

Not counted: the CUDA context and NCCL buffers (~1-3 GB on a GPU: keep that much free), allocator
fragmentation, Transformer Engine's own saved tensors (TE fuses norm + linear and saves fewer,
bf16 copies: the local-path count is an upper bound there).
"""

from __future__ import annotations

import math
import os

from megatron_grow import flops
from megatron_grow.config import grown_config, growth_requested
from megatron_grow.models import (
    FAMILIES,
    layer_kinds,
    padded_vocab_size,
    recompute_modules,
    sequence_parallel,
    stage_layers,
    tied_embeddings,
)

GIB = 2**30
RESERVE_GIB = 2.0  # kept free on a GPU for the CUDA context, NCCL buffers and fragmentation


def _stage_layers(cfg) -> list[int]:
    """Layers of each pipeline stage (the same split megatron-core builds)."""
    pp, n = cfg.pipeline_model_parallel_size, cfg.num_layers
    explicit = stage_layers(cfg) if pp > 1 else None
    if explicit:
        return explicit
    first, last = cfg.decoder_first_pipeline_num_layers, cfg.decoder_last_pipeline_num_layers
    if first is None and last is None:
        return [n // pp] * pp
    middle = pp - (first is not None) - (last is not None)
    rest = n - (first or 0) - (last or 0)
    mid = [rest // middle] * middle if middle else []
    return ([first] if first is not None else []) + mid + ([last] if last is not None else [])


def _layer_params(cfg, kind: str) -> tuple[int, int, int, int]:
    """(TP-sharded, replicated, routed-expert parameters, largest matrix) of one layer on one TP
    rank, before EP."""
    fam = FAMILIES[cfg.model]
    t, h = cfg.tensor_model_parallel_size, cfg.hidden_size
    attention = flops._attention_params(cfg)
    norm = 2 * h if fam["normalization"] == "LayerNorm" else h
    replicated = 2 * norm
    if fam.get("multi_latent_attention"):  # latent norms; the kv down-projection is replicated
        replicated += (cfg.q_lora_rank or 0) + cfg.kv_lora_rank + h * (cfg.kv_lora_rank + cfg.qk_pos_emb_head_dim)
        attention -= h * (cfg.kv_lora_rank + cfg.qk_pos_emb_head_dim)
    if kind == "dense":
        mlp = flops._mlp_params(cfg, "dense", True)
        sharded = (attention + mlp) // t
        if fam["add_bias_linear"]:  # QKV and fc1 biases split over TP, the two output biases replicated
            d, a, g = cfg.kv_channels or h // cfg.num_attention_heads, cfg.num_attention_heads, cfg.num_query_groups
            sharded += ((a + 2 * g) * d + cfg.ffn_hidden_size * (2 if fam["gated_linear_unit"] else 1)) // t
            replicated += 2 * h
        return sharded, replicated, 0, max(attention, mlp // (3 if fam["gated_linear_unit"] else 2) * 2) // t
    routed = cfg.num_experts * 3 * h * cfg.moe_ffn_hidden_size // t  # SwiGLU experts
    shared = 3 * h * (cfg.moe_shared_expert_intermediate_size or 0) // t
    return attention // t + shared, replicated + h * cfg.num_experts, routed, \
        attention // t


def _stage_params(cfg, stage: int, layers: list[int]) -> dict:
    """Parameters on one rank of pipeline stage ``stage``: dense (DP-replicated) and routed experts
    (split over EP; their data-parallel group is DP / EP), and the largest single tensor."""
    t, pp, h = cfg.tensor_model_parallel_size, cfg.pipeline_model_parallel_size, cfg.hidden_size
    V = padded_vocab_size(cfg.vocab_size)
    fam = FAMILIES[cfg.model]
    offset = sum(layers[:stage])
    kinds = layer_kinds(cfg, cfg.num_layers)[offset:offset + layers[stage]]
    dense = experts = largest = 0
    for kind in kinds:
        s, r, e, m = _layer_params(cfg, kind)
        dense, experts, largest = dense + s + r, experts + e // cfg.expert_model_parallel_size, max(largest, m)
    if stage == 0:
        dense += V * h // t + (cfg.max_position_embeddings * h if fam["position_embedding_type"] == "learned_absolute"
                               else 0)
        largest = max(largest, V * h // t)
    if stage == pp - 1:
        dense += h * (2 if fam["normalization"] == "LayerNorm" else 1)
        if not tied_embeddings(cfg) or pp > 1:  # (tied at PP > 1: the last stage keeps a copy)
            dense += V * h // t
        largest = max(largest, V * h // t)
    return {"dense": dense, "experts": experts, "largest": largest, "kinds": kinds}


def _attention_saved(cfg, t: int, micro_batch_size: int) -> tuple[float, float, float]:
    """Elements per token that one layer's attention saves, already divided by TP: (kept whatever
    is recomputed; core attention's, which selective core_attn recomputation drops; what that
    recomputation keeps instead: its inputs q, k, v)."""
    fam = FAMILIES[cfg.model]
    a, s = cfg.num_attention_heads, cfg.seq_length
    if fam.get("multi_latent_attention"):
        dqk, dv = cfg.qk_head_dim + cfg.qk_pos_emb_head_dim, cfg.v_head_dim
        qr, kvr, pos = cfg.q_lora_rank or 0, cfg.kv_lora_rank, cfg.qk_pos_emb_head_dim
        # q / kv down-projections (replicated): outputs, norm statistics, normalised, up-projection
        # inputs; RoPE's cos and sin (per position, for q and k)
        kept = (3 * qr + 1 if qr else 0) + (kvr + pos) + 2 * kvr + 1 + 4 * pos / micro_batch_size
        qkv = (2 * a * dqk + a * dv) / t
        return kept + a * dv / t, qkv + a * s / t, qkv  # (+ the probabilities: SDPA's math path)
    d = cfg.kv_channels or cfg.hidden_size // a
    g = cfg.num_query_groups or a
    rope = fam["position_embedding_type"] == "rope"
    fused = (a + 2 * g) * d  # the QKV projection's output: kept while q, k or v is a view of it
    inputs = (a * d + g * d if rope else 0) + fused  # q, k (new under RoPE), v (a view)
    if g < a:  # K and V repeated to the query heads: new tensors; q is new under RoPE, else a view
        core = 3 * a * d + (0 if rope else fused)
    else:
        core = fused + (2 * a * d if rope else 0)
    kept = a * d + a + (4 * d / micro_batch_size if rope else 0)  # output, log-sum-exp, RoPE's cos / sin
    return kept / t, core / t, inputs / t


def _mlp_saved(cfg, kind: str, t: int) -> dict:
    """Elements per token one layer's MLP saves, by recomputable module: mlp (dense), moe (routed
    experts and router), shared_experts."""
    fam, h = FAMILIES[cfg.model], cfg.hidden_size
    if kind == "dense":
        f = cfg.ffn_hidden_size / t
        return {"mlp": (5 * f if fam["gated_linear_unit"] else 2 * f)}
    k, E = cfg.moe_router_topk, cfg.num_experts
    fe = cfg.moe_ffn_hidden_size / t
    fs = (cfg.moe_shared_expert_intermediate_size or 0) / t
    return {"moe": k * h + k * (6 * fe + 1) + 6 * E, "shared_experts": 5 * fs + (h if fs else 0)}


def _sequence_split(cfg) -> int:
    """Over how many ranks the tensors outside attention and MLP (norms, residuals) are split: TP
    with sequence parallelism, else 1."""
    return cfg.tensor_model_parallel_size if sequence_parallel(cfg) else 1


def layer_activation_bytes(cfg, kind: str = "dense", micro_batch_size: int | None = None) -> dict:
    """Bytes one layer saves for backward per micro-batch on one rank: {"total", "input"
    (what full recomputation keeps), "recomputable": {module: bytes}}."""
    t, h = cfg.tensor_model_parallel_size, cfg.hidden_size
    tokens = (micro_batch_size or cfg.micro_batch_size) * cfg.seq_length
    el = 2 if cfg.bf16 else 4
    sp = _sequence_split(cfg)
    rms = FAMILIES[cfg.model]["normalization"] == "RMSNorm"
    # two norms (input, statistics, RMSNorm's normalised input) and the linear inputs they feed:
    # attention's QKV (or MLA's down-projections) and the MLP's fc1 (MoE: the router's and the shared expert's)
    norms = 2 * ((2 * h if rms else h) + 2 + h) / sp
    kept, core, core_inputs = _attention_saved(cfg, t, micro_batch_size or cfg.micro_batch_size)
    mlp = _mlp_saved(cfg, kind, t)
    per_token = norms + kept + core + sum(mlp.values())
    recomputable = {"core_attn": core - core_inputs, **mlp}  # (what recomputing each module saves)
    return {"total": per_token * tokens * el, "input": h / sp * tokens * el,
            "recomputable": {m: v * tokens * el for m, v in recomputable.items()}}


def _stage_activations(cfg, kinds: list[str], micro_batch_size: int) -> tuple[float, float]:
    """(saved for backward by one micro-batch on this stage, transient of recomputation in backward)."""
    per = [layer_activation_bytes(cfg, k, micro_batch_size) for k in kinds]
    g = cfg.recompute_granularity
    if not per:
        return 0.0, 0.0
    if g == "selective":
        mods = recompute_modules(cfg)
        kept = [p["total"] - sum(v for m, v in p["recomputable"].items() if m in mods) for p in per]
        return sum(kept), max(sum(v for m, v in p["recomputable"].items() if m in mods) for p in per)
    if g == "full":
        n = cfg.recompute_num_layers
        if cfg.recompute_method == "uniform":
            chunks = [per[i:i + n] for i in range(0, len(per), n)]
            return sum(c[0]["input"] for c in chunks), max(sum(p["total"] for p in c) for c in chunks)
        n = min(n, len(per))
        return sum(p["input"] for p in per[:n]) + sum(p["total"] for p in per[n:]), \
            max([p["total"] for p in per[:n]] or [0.0])
    return sum(p["total"] for p in per), 0.0


def head_bytes(cfg, micro_batch_size: int | None = None) -> float:
    """What the last stage's head saves per micro-batch: the final norm's tensors, the output layer's
    input and the fp32 logits of this rank's vocab shard (and their bf16 original in bf16)."""
    t, h, el = cfg.tensor_model_parallel_size, cfg.hidden_size, 2 if cfg.bf16 else 4
    sp = _sequence_split(cfg)
    norm = 3 if FAMILIES[cfg.model]["normalization"] == "RMSNorm" else 2
    V = padded_vocab_size(cfg.vocab_size)
    return (micro_batch_size or cfg.micro_batch_size) * cfg.seq_length * (norm * h / sp * el
                                                                          + V / t * (4 + (2 if cfg.bf16 else 0)))


def estimate(cfg, micro_batch_size: int | None = None) -> dict:
    """Bytes per rank for each pipeline stage of ``cfg`` (a finalized RunConfig) and the peak."""
    mbs = micro_batch_size or cfg.micro_batch_size
    t, pp, h = cfg.tensor_model_parallel_size, cfg.pipeline_model_parallel_size, cfg.hidden_size
    dp = max(cfg.world_size // (t * pp), 1)
    el = 2 if cfg.bf16 else 4
    state = (8 if cfg.optimizer == "adam" else 4) + (4 if cfg.bf16 else 0)
    layers = _stage_layers(cfg)
    micro_batches = cfg.global_batch_size // (mbs * dp) if cfg.global_batch_size else 1
    tokens = mbs * cfg.seq_length
    ep_dp = max(dp // cfg.expert_model_parallel_size, 1)  # routed experts' data-parallel group
    stages = []
    for i in range(pp):
        p = _stage_params(cfg, i, layers)
        params = p["dense"] + p["experts"]
        optimizer = (p["dense"] / dp + p["experts"] / ep_dp if cfg.use_distributed_optimizer else params) * state
        saved, recompute = _stage_activations(cfg, p["kinds"], mbs)
        in_flight = min(pp - i, max(micro_batches, 1))
        edge = head_bytes(cfg, mbs) if i == pp - 1 else 0.0
        # backward's peak on top of the saved layers: at its start, the head's saved tensors and the
        # largest weight's gradient (before DDP adds it to the fp32 buffer); or later a recomputed
        # chunk; and two hidden-sized gradients in flight
        backward = max(edge + p["largest"] * el, recompute) + 2 * tokens * h * el
        row = {"stage": i, "layers": layers[i], "params": params, "weights": params * el, "grads": params * 4,
               "optimizer": optimizer, "activations": in_flight * saved, "micro_batches_in_flight": in_flight,
               "backward": backward}
        row["total"] = row["weights"] + row["grads"] + row["optimizer"] + row["activations"] + backward
        stages.append(row)
    peak = max(stages, key=lambda r: r["total"])
    return {"stages": stages, "peak": peak["total"], "peak_stage": peak["stage"], "micro_batch_size": mbs}


def largest_micro_batch(cfg, capacity_bytes: float, limit: int = 1024) -> int:
    """The largest micro-batch size whose peak fits ``capacity_bytes`` per rank (0: none fits)."""
    best = 0
    mbs = 1
    while mbs <= limit and estimate(cfg, mbs)["peak"] <= capacity_bytes:
        best, mbs = mbs, mbs * 2
    lo, hi = best, min(mbs, limit + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if estimate(cfg, mid)["peak"] <= capacity_bytes else (lo, mid)
    return lo


def describe(cfg, est: dict | None = None) -> str:
    """One line per pipeline stage, in GiB."""
    est = est or estimate(cfg)
    lines = []
    for r in est["stages"]:
        lines.append(f"  stage {r['stage']}: {r['layers']} layers, {r['params'] / 1e6:.1f}M params | weights "
                     f"{r['weights'] / GIB:.2f} + grads {r['grads'] / GIB:.2f} + optimizer {r['optimizer'] / GIB:.2f}"
                     f" + activations {r['activations'] / GIB:.2f} ({r['micro_batches_in_flight']} micro-batches)"
                     f" + backward peak {r['backward'] / GIB:.2f} = {r['total'] / GIB:.2f} GiB")
    return "\n".join(lines)


def gib(x: float) -> str:
    return f"{x / GIB:.2f} GiB" if math.isfinite(x) else "inf"


def capacity(device) -> float:
    """Bytes one rank may plan for: the GPU's memory less RESERVE_GIB, or on CPU the machine's memory
    shared by the ranks on it."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory - RESERVE_GIB * GIB
    import psutil

    return psutil.virtual_memory().total / int(os.environ.get("LOCAL_WORLD_SIZE", 1))


def phases(cfg) -> list[tuple[str, object]]:
    """("", the run's config) and, when the run grows, (" after growth", the grown config) for each
    growth (--grow-schedule: " after growth to L layers")."""
    out = [("", cfg)]
    while growth_requested(cfg) and cfg.num_layers < (cfg.grow_to_layers or 0):
        cfg = grown_config(cfg)
        out.append((f" after growth to {cfg.num_layers} layers" if cfg.grow_schedule else " after growth", cfg))
    return out


def launch_warnings(cfg, capacity_bytes: float) -> list[str]:
    """A warning for the configuration, and for the grown one when the run grows, whose planned
    peak exceeds ``capacity_bytes`` per rank, naming what would make it fit."""
    out = []
    for when, c in phases(cfg):
        est = estimate(c)
        if est["peak"] <= capacity_bytes:
            continue
        best = largest_micro_batch(c, capacity_bytes, limit=c.micro_batch_size)
        fix = (f"--micro-batch-size {best} fits" if best else "no micro-batch fits") + \
            ("" if c.use_distributed_optimizer or c.data_parallel_size == 1 else "; --use-distributed-optimizer") + \
            ("" if c.recompute_granularity else "; --recompute-granularity selective|full") + \
            "; more TP/PP (" + ("--grow-tensor/pipeline-model-parallel-size" if when else
                               "--tensor/pipeline-model-parallel-size") + ")"
        out.append(f"warning: planned memory{when}: {gib(est['peak'])} per rank on pipeline stage "
                   f"{est['peak_stage']} exceeds the {gib(capacity_bytes)} available ({c.num_layers} layers, "
                   f"TP{c.tensor_model_parallel_size} PP{c.pipeline_model_parallel_size}, micro-batch "
                   f"{c.micro_batch_size}): {fix}. Details: "
                   f"python tools/plan_memory.py --world-size {c.world_size} <these flags>\n" + describe(c, est))
    return out
