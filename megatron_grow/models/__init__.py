"""Model families: presets, megatron-core TransformerConfig and layer specs, GPTModel construction, and
the checks of the model's flags (shapes, MoE / MLA, the pipeline layout, sequence parallelism, recomputation).

A family is a dict of fixed architecture choices (norm, activation, positions, tying) plus
size presets. Every preset field can be overridden by the flag of the same name.
"""

from __future__ import annotations

import math

import torch

from megatron_grow.config import RunConfig
from megatron_grow.models.deepseek_v3 import DEEPSEEK_V3, moe_layer_pattern
from megatron_grow.models.gpt2 import GPT2
from megatron_grow.models.llama3 import LLAMA3, ROPE_SCALING

FAMILIES = {"gpt2": GPT2, "llama3": LLAMA3, "deepseek-v3": DEEPSEEK_V3}


def tied_embeddings(cfg) -> bool:
    """Whether the LM head shares the embedding's weight: --untie-embeddings-and-output-weights, else the family's."""
    untie = _field(cfg, "untie_embeddings_and_output_weights")
    return FAMILIES[_field(cfg, "model")]["tied_embeddings"] if untie is None else not untie


def rotary_base(cfg):
    """--rotary-base, else the family's (None: the family has no RoPE)."""
    value = _field(cfg, "rotary_base")
    return FAMILIES[_field(cfg, "model")].get("rotary_base") if value is None else value


def norm_epsilon(cfg) -> float:
    """--norm-epsilon, else the family's."""
    value = _field(cfg, "norm_epsilon")
    return FAMILIES[_field(cfg, "model")]["norm_epsilon"] if value is None else value


def rope_scaling(cfg) -> dict | None:
    """LLaMA-3.1's RoPE scaling as HF's rope_scaling names it (--use-rope-scaling), else None."""
    if not _field(cfg, "use_rope_scaling"):
        return None
    return {"rope_type": "llama3", "factor": float(_field(cfg, "rope_scaling_factor")), **ROPE_SCALING}


def activation_func(name: str):
    import functools

    import torch.nn.functional as F

    return {"silu": F.silu, "gelu": F.gelu, "gelu_tanh": functools.partial(F.gelu, approximate="tanh")}[name]


def architecture(cfg) -> dict:
    """Every constant that, with the weights, defines the function a checkpoint computes: the family's
    fixed choices and the run's shapes. Saved in each checkpoint (``architecture`` in its common state),
    so that tools such as export_hf need no knowledge of this code's families."""
    fam = FAMILIES[cfg.model]
    arch = {
        "family": cfg.model, "num_layers": cfg.num_layers, "hidden_size": cfg.hidden_size,
        "ffn_hidden_size": cfg.ffn_hidden_size, "num_attention_heads": cfg.num_attention_heads,
        "num_query_groups": cfg.num_query_groups or cfg.num_attention_heads,
        "kv_channels": cfg.kv_channels or cfg.hidden_size // cfg.num_attention_heads,
        "vocab_size": cfg.vocab_size, "padded_vocab_size": padded_vocab_size(cfg.vocab_size),
        "max_position_embeddings": cfg.max_position_embeddings or cfg.seq_length,
        "normalization": fam["normalization"], "norm_epsilon": norm_epsilon(cfg), "activation": fam["activation"],
        "gated_linear_unit": fam["gated_linear_unit"], "add_bias_linear": fam["add_bias_linear"],
        "position_embedding_type": fam["position_embedding_type"], "tied_embeddings": tied_embeddings(cfg),
        "rotary_base": rotary_base(cfg), "rotary_percent": cfg.rotary_percent, "rotary_interleaved": False,
        "rope_scaling": rope_scaling(cfg), "layernorm_zero_centered_gamma": cfg.apply_layernorm_1p,
        "softmax_scale": None,  # 1/sqrt(head dim)
    }
    if fam.get("moe"):
        arch.update({k: getattr(cfg, k) for k in (
            "q_lora_rank", "kv_lora_rank", "qk_head_dim", "qk_pos_emb_head_dim", "v_head_dim", "num_experts",
            "moe_router_topk", "moe_ffn_hidden_size", "moe_shared_expert_intermediate_size", "moe_first_dense_layers",
            "moe_layer_freq", "moe_router_score_function", "moe_router_enable_expert_bias",
            "moe_router_topk_scaling_factor", "moe_router_num_groups", "moe_router_group_topk")},
            multi_latent_attention=True, qk_layernorm=True, moe_router_dtype="fp32",
            rope_interleave=True)  # MLA rotates its RoPE dims as interleaved pairs (megatron's MLA, HF's name)
    return arch


def preset(family: str, name: str) -> dict:
    return dict(FAMILIES[family]["presets"][name])


def _field(cfg, name: str):
    """A field of a RunConfig or of its dict (as a checkpoint stores it)."""
    return cfg.get(name) if isinstance(cfg, dict) else getattr(cfg, name)


def layer_kinds(cfg, num_layers: int) -> list[str]:
    """"dense" or "moe" for each of ``num_layers`` layers of ``cfg``'s family (a RunConfig or its dict)."""
    if not FAMILIES[_field(cfg, "model")].get("moe"):
        return ["dense"] * num_layers
    pattern = moe_layer_pattern(num_layers, _field(cfg, "moe_first_dense_layers") or 0,
                                _field(cfg, "moe_layer_freq") or 1)
    return ["moe" if x else "dense" for x in pattern]


def growth_kinds(cfg, source_layers: int, target_layers: int):
    """(source, target) layer kinds for a growth plan of an MoE family; None for dense families."""
    if not FAMILIES[_field(cfg, "model")].get("moe"):
        return None
    return layer_kinds(cfg, source_layers), layer_kinds(cfg, target_layers)


def padded_vocab_size(vocab_size: int, divisible_by: int = 128) -> int:
    """Vocab padded to a multiple of 128, independent of TP so every layout has the same shapes."""
    return -(-vocab_size // divisible_by) * divisible_by


def _no_init(weight) -> None:
    """megatron's init method for every weight: nothing (megatron_grow.models.init draws them)."""


def transformer_config(cfg, tp: int, pp: int, device: str):
    """megatron-core TransformerConfig for a RunConfig ``cfg`` at a (tp, pp) layout."""
    from megatron.core.transformer.enums import AttnBackend
    from megatron.core.transformer.transformer_config import MLATransformerConfig, TransformerConfig

    fam = FAMILIES[cfg.model]
    bf16 = cfg.bf16
    kw = dict(
        num_layers=cfg.num_layers,
        hidden_size=cfg.hidden_size,
        ffn_hidden_size=cfg.ffn_hidden_size,
        num_attention_heads=cfg.num_attention_heads,
        num_query_groups=cfg.num_query_groups or cfg.num_attention_heads,
        kv_channels=cfg.kv_channels,
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp,
        normalization=fam["normalization"],
        layernorm_epsilon=norm_epsilon(cfg),
        layernorm_zero_centered_gamma=cfg.apply_layernorm_1p,
        gated_linear_unit=fam["gated_linear_unit"],
        activation_func=activation_func(fam["activation"]),
        add_bias_linear=fam["add_bias_linear"],
        hidden_dropout=cfg.hidden_dropout,
        attention_dropout=cfg.attention_dropout,
        init_method_std=cfg.init_method_std,
        # (Megatron-LM's --attention-backend and FP8 flags; flash, fused and FP8 only with Transformer Engine
        # on CUDA: megatron_grow/finalize.py refuses them elsewhere. megatron-core turns the backend into NVTE_*
        # variables for the process; the local layers, whatever the backend, leave them as auto does)
        attention_backend=AttnBackend[cfg.attention_backend if cfg.transformer_impl == "transformer_engine"
                                      else "auto"], fp8=cfg.fp8_format,
        fp8_amax_history_len=cfg.fp8_amax_history_len, fp8_amax_compute_algo=cfg.fp8_amax_compute_algo,
        bf16=bf16,
        params_dtype=torch.bfloat16 if bf16 else torch.float32,
        pipeline_dtype=torch.bfloat16 if bf16 else torch.float32,
        autocast_dtype=torch.bfloat16 if bf16 else None,
        bias_activation_fusion=False,
        masked_softmax_fusion=False,
        bias_dropout_fusion=False,
        apply_rope_fusion=False,
        gradient_accumulation_fusion=False,
        persist_layer_norm=False,
        # megatron's own init runs only to tag each weight with its TP partition dim (it does that in
        # its init): its init methods draw nothing, megatron_grow.models.init draws every weight once
        perform_initialization=True, init_method=_no_init, output_layer_init_method=_no_init,
        embedding_init_method=_no_init,
        deallocate_pipeline_outputs=device == "cuda",
        sequence_parallel=sequence_parallel(cfg, tp),
        recompute_granularity=cfg.recompute_granularity, recompute_method=cfg.recompute_method,
        recompute_num_layers=cfg.recompute_num_layers,
        recompute_modules=recompute_modules(cfg) if cfg.recompute_granularity == "selective" else None,
        num_layers_in_first_pipeline_stage=cfg.decoder_first_pipeline_num_layers,
        num_layers_in_last_pipeline_stage=cfg.decoder_last_pipeline_num_layers,
    )
    stages = stage_layers(cfg)
    if stages and pp > 1:  # explicit per-stage layer counts, as a megatron pipeline layout
        kw["pipeline_model_parallel_layout"] = (
            [["embedding"] + ["decoder"] * stages[0]] + [["decoder"] * n for n in stages[1:-1]]
            + [["decoder"] * stages[-1] + ["loss"]])
    if fam.get("moe"):
        kw.update(_mla_moe_kwargs(cfg, tp))
    return (MLATransformerConfig if fam.get("multi_latent_attention") else TransformerConfig)(**kw)


def _mla_moe_kwargs(cfg, tp: int) -> dict:
    """MLATransformerConfig / MoE fields of a deepseek-v3 RunConfig."""
    return dict(
        multi_latent_attention=True, q_lora_rank=cfg.q_lora_rank or None, kv_lora_rank=cfg.kv_lora_rank,
        qk_head_dim=cfg.qk_head_dim, qk_pos_emb_head_dim=cfg.qk_pos_emb_head_dim, v_head_dim=cfg.v_head_dim,
        qk_layernorm=True, rope_type="rope", rotary_base=rotary_base(cfg),
        num_query_groups=cfg.num_attention_heads, kv_channels=None,
        num_moe_experts=cfg.num_experts, moe_router_topk=cfg.moe_router_topk,
        moe_ffn_hidden_size=cfg.moe_ffn_hidden_size,
        moe_shared_expert_intermediate_size=cfg.moe_shared_expert_intermediate_size or None,
        moe_layer_freq=moe_layer_pattern(cfg.num_layers, cfg.moe_first_dense_layers or 0, cfg.moe_layer_freq),
        moe_router_score_function=cfg.moe_router_score_function,
        moe_router_topk_scaling_factor=cfg.moe_router_topk_scaling_factor,
        moe_router_num_groups=cfg.moe_router_num_groups, moe_router_group_topk=cfg.moe_router_group_topk,
        moe_router_load_balancing_type=cfg.moe_router_load_balancing_type,
        moe_aux_loss_coeff=cfg.moe_aux_loss_coeff if cfg.moe_router_load_balancing_type != "none" else 0.0,
        moe_router_enable_expert_bias=cfg.moe_router_enable_expert_bias,
        moe_router_bias_update_rate=cfg.moe_router_bias_update_rate,
        moe_z_loss_coeff=cfg.moe_z_loss_coeff, moe_token_dispatcher_type=cfg.moe_token_dispatcher_type,
        moe_router_dtype="fp32", moe_grouped_gemm=False,
        expert_model_parallel_size=cfg.expert_model_parallel_size, expert_tensor_parallel_size=tp,
    )


def layer_spec(cfg, config):
    """Per-layer specs for this pipeline stage: Transformer Engine's, or megatron's local modules with
    our SDPA core attention and norms that take sequence parallelism (megatron's local norm refuses it)."""
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_decoder_block_spec
    from megatron.core.transformer import multi_latent_attention
    from megatron.core.transformer.identity_op import IdentityOp

    from megatron_grow.models.attention import SDPAttention
    from megatron_grow.models.layers import SequenceParallelNorm

    te = cfg.transformer_impl == "transformer_engine"
    block = get_gpt_decoder_block_spec(config, use_transformer_engine=te,
                                       normalization=FAMILIES[cfg.model]["normalization"])
    if te:
        return block
    block.layer_norm = SequenceParallelNorm
    for spec in block.layer_specs:
        sub, attn = spec.submodules, spec.submodules.self_attention.submodules
        attn.core_attention = SDPAttention
        sub.input_layernorm = sub.pre_mlp_layernorm = SequenceParallelNorm
        if config.multi_latent_attention:
            # MLA: megatron's core attention rejects its q/k vs v head sizes, and its column-parallel
            # kv down-projection loses grads at TP > 1 (megatron_grow/models/layers.py): a replicated
            # one (TE's when installed, else ours)
            attn.linear_kv_down_proj = multi_latent_attention.TELinear
            attn.q_layernorm = SequenceParallelNorm if attn.q_layernorm is not IdentityOp else IdentityOp
            attn.kv_layernorm = SequenceParallelNorm if attn.kv_layernorm is not IdentityOp else IdentityOp
    return block


def build_model(cfg, tp: int, pp: int, device: torch.device):
    """This rank's GPTModel stage for ``cfg`` at layout (tp, pp), initialised from (seed, name).

    With --mup the init is muP-scaled and the muP forward multipliers are installed
    (megatron_grow/mup.py); both follow ``cfg``'s width and depth (the target's, when growing)."""
    from megatron.core import parallel_state as ps
    from megatron.core.models.gpt import GPTModel

    from megatron_grow import mup
    from megatron_grow.models.init import init_weights
    from megatron_grow.models.layers import megatron_without_te

    megatron_without_te()
    fam = FAMILIES[cfg.model]
    config = transformer_config(cfg, tp, pp, device.type)
    model = GPTModel(
        config=config,
        transformer_layer_spec=layer_spec(cfg, config),
        vocab_size=padded_vocab_size(cfg.vocab_size),
        max_sequence_length=cfg.max_position_embeddings or cfg.seq_length,
        pre_process=ps.is_pipeline_first_stage(),
        post_process=ps.is_pipeline_last_stage(),
        share_embeddings_and_output_weights=tied_embeddings(cfg),
        position_embedding_type=fam["position_embedding_type"],
        rotary_base=rotary_base(cfg) or 10000,  # (gpt2: unused)
        rotary_percent=cfg.rotary_percent,
        rope_scaling=cfg.use_rope_scaling, rope_scaling_factor=cfg.rope_scaling_factor,
        parallel_output=True,
    )
    model.to(device)
    init_weights(model, cfg.seed, cfg.init_method_std, cfg.num_layers, mup.width_mult(cfg))
    mup.install(model, cfg)
    return model


# --- the model's flags: presets, shapes, MoE / MLA, pipeline layout, sequence parallelism, recomputation ---
def apply_preset(cfg: RunConfig) -> list[str]:
    """Fill unset size fields from the family preset; returns problems (unknown preset)."""
    presets = FAMILIES[cfg.model]["presets"]
    if cfg.preset not in presets:
        return [f"--preset {cfg.preset!r} is not a {cfg.model} preset; choose one of {', '.join(presets)}"]
    groups_given = cfg.num_query_groups
    for k, v in presets[cfg.preset].items():
        if getattr(cfg, k) is None:
            setattr(cfg, k, v)
    if cfg.untie_embeddings_and_output_weights is None:
        cfg.untie_embeddings_and_output_weights = not FAMILIES[cfg.model]["tied_embeddings"]
    cfg.rotary_base, cfg.norm_epsilon = rotary_base(cfg), norm_epsilon(cfg)
    if cfg.group_query_attention is False and FAMILIES[cfg.model]["group_query_attention"]:
        # Megatron-LM's meaning: without --group-query-attention, one KV head per query head
        if groups_given not in (None, cfg.num_attention_heads):
            return [f"--num-query-groups {groups_given} with --no-group-query-attention: grouped-query attention "
                    f"is off, one KV head per query head; drop one of the two"]
        cfg.num_query_groups = cfg.num_attention_heads
    if cfg.num_query_groups is None:
        cfg.num_query_groups = cfg.num_attention_heads
    if cfg.max_position_embeddings is None:
        cfg.max_position_embeddings = cfg.seq_length
    return []


def model_problems(cfg: RunConfig) -> list[str]:
    """The model's shape, whatever the layout."""
    P = []
    if cfg.num_layers < 0:
        P.append(f"--num-layers must be >= 0 (got {cfg.num_layers})")
    if cfg.num_attention_heads % cfg.num_query_groups:
        P.append(f"--num-attention-heads {cfg.num_attention_heads} is not divisible by "
                 f"--num-query-groups {cfg.num_query_groups}")
    if cfg.kv_channels is None and cfg.hidden_size % cfg.num_attention_heads and cfg.kv_lora_rank is None:
        P.append(f"--hidden-size {cfg.hidden_size} is not divisible by --num-attention-heads "
                 f"{cfg.num_attention_heads}; change one or set --kv-channels")
    if cfg.max_position_embeddings < cfg.seq_length:
        P.append(f"--seq-length {cfg.seq_length} exceeds --max-position-embeddings {cfg.max_position_embeddings}")
    return P + architecture_problems(cfg) + _moe_problems(cfg)


# Megatron-LM's architecture flags: the values each family has (the first its own), and how a message says them
ARCHITECTURE_FLAGS = {
    "swiglu": (lambda fam: (fam["gated_linear_unit"] and fam["activation"] == "silu",),
               lambda v: "a SwiGLU MLP" if v else "a GeLU MLP"),
    "normalization": (lambda fam: (fam["normalization"],), str),
    "position_embedding_type": (lambda fam: (fam["position_embedding_type"],), lambda v: f"{v} positions"),
    "disable_bias_linear": (lambda fam: (not fam["add_bias_linear"],),
                            lambda v: "linear layers without biases" if v else "linear layers with biases"),
    "group_query_attention": (lambda fam: (True, False) if fam["group_query_attention"] else (False,),
                              lambda v: "grouped-query attention" if v else "no grouped-query attention"),
}


def architecture_problems(cfg: RunConfig) -> list[str]:
    """Megatron-LM's architecture flags against the family (a value it has is accepted, another is refused
    naming the family that has it), and the RoPE and norm constants."""
    P = []
    for name, (values, say) in ARCHITECTURE_FLAGS.items():
        given = getattr(cfg, name)
        if given is None or given in values(FAMILIES[cfg.model]):
            continue
        flag = "--" + name.replace("_", "-")
        shown = (flag if given else "--no-" + flag[2:]) if isinstance(given, bool) else f"{flag} {given}"
        others = sorted((n for n, fam in FAMILIES.items() if given in values(fam)), key=lambda n: n != "llama3")
        where = (f"{', '.join(others)} {'has' if len(others) == 1 else 'have'} {say(given)} (pass --model {others[0]})"
                 if others else f"no model family here has {say(given)}")
        P.append(f"{shown}: --model {cfg.model} uses {say(values(FAMILIES[cfg.model])[0])}; {where}")
    rope = FAMILIES[cfg.model]["position_embedding_type"] == "rope"
    mla = bool(FAMILIES[cfg.model].get("multi_latent_attention"))
    for name, value, ok, want in [("rotary_base", cfg.rotary_base, lambda v: v > 0, "> 0"),
                                  ("norm_epsilon", cfg.norm_epsilon, lambda v: v > 0, "> 0"),
                                  ("rope_scaling_factor", cfg.rope_scaling_factor, lambda v: v >= 1, ">= 1"),
                                  ("rotary_percent", cfg.rotary_percent, lambda v: 0 < v <= 1, "in (0, 1]")]:
        if value is not None and not (math.isfinite(value) and ok(value)):
            P.append(f"--{name.replace('_', '-')} {value} must be {want}")
    if not rope:
        P += [f"--{name.replace('_', '-')}: --model {cfg.model} has learned absolute positions, no RoPE; llama3 "
              f"and deepseek-v3 have RoPE (pass --model llama3)" for name, given in
              [("rotary_base", cfg.rotary_base is not None), ("use_rope_scaling", cfg.use_rope_scaling),
               ("rotary_percent", cfg.rotary_percent != 1.0)] if given]
    elif mla:
        if cfg.use_rope_scaling:
            P.append(f"--use-rope-scaling: --model {cfg.model}'s multi-latent attention has plain RoPE; llama3 has "
                     f"LLaMA-3.1's RoPE scaling (pass --model llama3)")
        if cfg.rotary_percent != 1.0:
            P.append(f"--rotary-percent {cfg.rotary_percent}: --model {cfg.model}'s multi-latent attention rotates "
                     f"--qk-pos-emb-head-dim dimensions of each head; set that instead")
    elif cfg.rotary_percent != 1.0 and math.isfinite(cfg.rotary_percent) and 0 < cfg.rotary_percent <= 1:
        rotated = int((cfg.kv_channels or cfg.hidden_size // cfg.num_attention_heads) * cfg.rotary_percent)
        if rotated < 2 or rotated % 2:
            P.append(f"--rotary-percent {cfg.rotary_percent} rotates {rotated} dimensions of each head; RoPE "
                     f"rotates pairs: pick a fraction giving an even number >= 2")
    if cfg.rope_scaling_factor != 8.0 and not cfg.use_rope_scaling:
        P.append(f"--rope-scaling-factor {cfg.rope_scaling_factor} applies with --use-rope-scaling only; add it "
                 f"or drop the factor")
    return P


MLA_FIELDS = ("q_lora_rank", "kv_lora_rank", "qk_head_dim", "qk_pos_emb_head_dim", "v_head_dim")
MOE_FIELDS = ("num_experts", "moe_router_topk", "moe_ffn_hidden_size", "moe_shared_expert_intermediate_size",
              "moe_first_dense_layers")


def _moe_problems(cfg: RunConfig) -> list[str]:
    """DeepSeekV3 (MLA + MoE) flags: only on that family, and consistent with the layout."""
    fam, tp, pp, ep = FAMILIES[cfg.model], cfg.tensor_model_parallel_size, cfg.pipeline_model_parallel_size, \
        cfg.expert_model_parallel_size
    if not fam.get("moe"):
        given = [f for f in MLA_FIELDS + MOE_FIELDS if getattr(cfg, f) is not None]
        if ep != 1:
            given.append("expert_model_parallel_size")
        return [f"--{f.replace('_', '-')} is a deepseek-v3 flag; --model {cfg.model} has no experts or latent "
                f"attention (use --model deepseek-v3)" for f in given]
    P = []
    for f in MLA_FIELDS[1:] + MOE_FIELDS[:3]:
        if getattr(cfg, f) is None or getattr(cfg, f) < 1:
            P.append(f"--{f.replace('_', '-')} must be >= 1 (got {getattr(cfg, f)})")
    if P:
        return P
    if ep < 1:
        return [f"--expert-model-parallel-size must be >= 1 (got {ep})"]
    if not 1 <= cfg.moe_router_topk <= cfg.num_experts:
        P.append(f"--moe-router-topk {cfg.moe_router_topk} must lie in 1..--num-experts {cfg.num_experts}")
    if cfg.num_experts % ep:
        P.append(f"--num-experts {cfg.num_experts} is not divisible by --expert-model-parallel-size {ep}")
    if cfg.world_size % (tp * pp * ep):
        P.append(f"world size {cfg.world_size} is not divisible by --tensor-model-parallel-size {tp} x "
                 f"--pipeline-model-parallel-size {pp} x --expert-model-parallel-size {ep} (experts are split "
                 f"over the data-parallel ranks of each TP x PP position); launch a multiple of {tp * pp * ep}")
    for f in ("moe_ffn_hidden_size", "moe_shared_expert_intermediate_size"):
        if (getattr(cfg, f) or 0) % tp:
            P.append(f"--{f.replace('_', '-')} {getattr(cfg, f)} is not divisible by --tensor-model-parallel-size {tp}")
    if (cfg.moe_first_dense_layers or 0) < 0 or cfg.moe_layer_freq < 1:
        P.append("--moe-first-dense-layers must be >= 0 and --moe-layer-freq >= 1")
    P += _group_routing_problems(cfg)
    if cfg.moe_router_topk_scaling_factor is not None and not cfg.moe_router_topk_scaling_factor > 0:
        P.append(f"--moe-router-topk-scaling-factor must be > 0 (got {cfg.moe_router_topk_scaling_factor})")
    if cfg.moe_router_enable_expert_bias and cfg.moe_router_score_function != "sigmoid":
        P.append("--moe-router-enable-expert-bias needs --moe-router-score-function sigmoid "
                 "(or --no-moe-router-enable-expert-bias)")
    return P


def _group_routing_problems(cfg: RunConfig) -> list[str]:
    """Group-limited routing (DeepSeek-V3's node-limited routing): groups are ranked by the sum of their
    top (topk / group-topk) scores, so group-topk must divide into topk, and the chosen groups must hold
    topk experts."""
    G, g, k, E = cfg.moe_router_num_groups, cfg.moe_router_group_topk, cfg.moe_router_topk, cfg.num_experts
    if G is None and g is None:
        return []
    if G is None or g is None:
        return ["--moe-router-num-groups and --moe-router-group-topk go together (group-limited routing)"]
    if not (G >= 1 and E % G == 0):
        return [f"--moe-router-num-groups {G} must divide --num-experts {E}"]
    if not (1 <= g <= G and k % g == 0 and g * (E // G) >= k):
        return [f"--moe-router-group-topk {g} must lie in 1..--moe-router-num-groups {G}, divide --moe-router-topk "
                f"{k}, and its groups must hold {k} experts (each group has {E // G})"]
    return []


def stage_layers(cfg: RunConfig) -> list[int] | None:
    """--pipeline-layers as a list of ints (None when not given)."""
    return [int(x) for x in cfg.pipeline_layers.split(",")] if cfg.pipeline_layers else None


def layout_problems(cfg: RunConfig) -> list[str]:
    """The model against the tensor / pipeline / data-parallel layout and the batch."""
    tp, pp, ws = cfg.tensor_model_parallel_size, cfg.pipeline_model_parallel_size, cfg.world_size
    P = []
    if ws % (tp * pp):
        P.append(f"world size {ws} is not divisible by --tensor-model-parallel-size {tp} x "
                 f"--pipeline-model-parallel-size {pp}; launch a multiple of {tp * pp} processes")
    if cfg.num_attention_heads % tp:
        P.append(f"--num-attention-heads {cfg.num_attention_heads} is not divisible by "
                 f"--tensor-model-parallel-size {tp}")
    if cfg.num_query_groups % tp:
        P.append(f"--num-query-groups {cfg.num_query_groups} is not divisible by "
                 f"--tensor-model-parallel-size {tp}")
    if cfg.ffn_hidden_size % tp:
        P.append(f"--ffn-hidden-size {cfg.ffn_hidden_size} is not divisible by --tensor-model-parallel-size {tp}")
    return P + _pipeline_problems(cfg)


def _pipeline_problems(cfg: RunConfig) -> list[str]:
    pp, L = cfg.pipeline_model_parallel_size, cfg.num_layers
    first, last = cfg.decoder_first_pipeline_num_layers, cfg.decoder_last_pipeline_num_layers
    if cfg.pipeline_layers:
        try:
            stages = stage_layers(cfg)
        except ValueError:
            return [f"--pipeline-layers {cfg.pipeline_layers!r} must be comma-separated layer counts, one per stage"]
        if first is not None or last is not None:
            return ["--pipeline-layers replaces --decoder-first/last-pipeline-num-layers; give one or the other"]
        if len(stages) != pp or sum(stages) != L or min(stages) < 1:
            return [f"--pipeline-layers {cfg.pipeline_layers} must give {pp} stage(s) (--pipeline-model-parallel-size) "
                    f"of at least one layer each, adding up to --num-layers {L}"]
        return []
    if pp == 1:
        if first is not None or last is not None:
            return ["--decoder-first/last-pipeline-num-layers need --pipeline-model-parallel-size > 1"]
        return []
    if L == 0:
        return [f"--num-layers 0 has no layers to split over --pipeline-model-parallel-size {pp}; "
                "use --pipeline-model-parallel-size 1"]
    rest, middle = L - (first or 0) - (last or 0), pp - (first is not None) - (last is not None)
    if first is None and last is None and L % pp:
        return [f"--num-layers {L} does not split evenly over --pipeline-model-parallel-size {pp}: "
                f"use a multiple of {pp} layers, or place the remainder with "
                f"--decoder-first-pipeline-num-layers / --decoder-last-pipeline-num-layers"]
    if rest < 0 or (middle == 0 and rest != 0) or (middle > 0 and (rest % middle or rest == 0)):
        return [f"--decoder-first-pipeline-num-layers {first} / --decoder-last-pipeline-num-layers {last} "
                f"leave {rest} of --num-layers {L} layers for {middle} middle stage(s); they must split "
                f"evenly with at least one layer per stage"]
    return []


def sequence_parallel(cfg: RunConfig, tp: int | None = None) -> bool:
    """Whether the sequence is split over TP ranks at TP size ``tp`` (default: the run's): with
    --sequence-parallel, and always for MoE with TP (megatron-core requires it there)."""
    tp = cfg.tensor_model_parallel_size if tp is None else tp
    return tp > 1 and (cfg.sequence_parallel or bool(FAMILIES[cfg.model].get("moe")))


def recompute_modules(cfg: RunConfig) -> list[str]:
    return [m.strip() for m in (cfg.recompute_modules or "core_attn").split(",") if m.strip()]


RECOMPUTE_MODULES = ("core_attn", "mlp", "layernorm", "moe", "shared_experts", "mla_up_proj")
MOE_RECOMPUTE_MODULES = ("moe", "shared_experts", "mla_up_proj")  # deepseek-v3's modules
# recomputed by megatron-core 0.16's CheckpointWithoutOutput, which calls Transformer Engine's FP8 state
TE_RECOMPUTE_MODULES = ("layernorm", "mla_up_proj")


def memory_problems(cfg: RunConfig) -> list[str]:
    """Sequence parallelism, recomputation and overlap flags (megatron's rules, as flags)."""
    P, tp = [], cfg.tensor_model_parallel_size
    if sequence_parallel(cfg) and cfg.seq_length % tp:
        P.append(f"--seq-length {cfg.seq_length} is not divisible by --tensor-model-parallel-size {tp} "
                 f"(sequence parallelism{' (on for MoE with TP)' if cfg.num_experts else ''} splits the "
                 f"sequence over TP ranks)")
    g, method, n = cfg.recompute_granularity, cfg.recompute_method, cfg.recompute_num_layers
    if g == "full" and (method is None or n is None):
        P.append("--recompute-granularity full needs --recompute-method uniform|block and --recompute-num-layers N "
                 "(uniform 1: every layer)")
    if g != "full" and (method is not None or n is not None):
        P.append("--recompute-method / --recompute-num-layers apply to --recompute-granularity full only")
    if cfg.recompute_modules is not None:
        mods = set(recompute_modules(cfg))
        if g != "selective":
            P.append("--recompute-modules applies to --recompute-granularity selective only")
        elif not mods or mods - set(RECOMPUTE_MODULES):
            P.append(f"--recompute-modules {cfg.recompute_modules!r}: choose comma-separated from "
                     f"{', '.join(RECOMPUTE_MODULES)}")
        elif mods & set(MOE_RECOMPUTE_MODULES) and not cfg.num_experts:
            P.append(f"--recompute-modules {', '.join(MOE_RECOMPUTE_MODULES)} are deepseek-v3's (MoE, MLA) modules")
        elif mods & set(TE_RECOMPUTE_MODULES) and cfg.transformer_impl != "transformer_engine":
            P.append(f"--recompute-modules {', '.join(TE_RECOMPUTE_MODULES)} need Transformer Engine (megatron-core "
                     f"recomputes them through it): use core_attn, mlp, moe or shared_experts with --transformer-impl "
                     f"local")
    if cfg.overlap_param_gather:
        P.append("--overlap-param-gather needs megatron-core's distributed optimizer; this trainer's own "
                 "(--use-distributed-optimizer, which Muon-NSGD needs) broadcasts the updated weights after the "
                 "step: drop the flag")
    return P
