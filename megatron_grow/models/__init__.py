"""Model families: presets, megatron-core TransformerConfig and layer specs, GPTModel construction.

A family is a dict of fixed architecture choices (norm, activation, positions, tying) plus
size presets. Every preset field can be overridden by the flag of the same name.
"""

from __future__ import annotations

import torch

from megatron_grow.models.deepseek_v3 import DEEPSEEK_V3, moe_layer_pattern
from megatron_grow.models.gpt2 import GPT2
from megatron_grow.models.llama3 import LLAMA3

FAMILIES = {"gpt2": GPT2, "llama3": LLAMA3, "deepseek-v3": DEEPSEEK_V3}


def tied_embeddings(cfg) -> bool:
    """Whether the LM head shares the embedding's weight: --untie-embeddings-and-output-weights, else the family's."""
    untie = _field(cfg, "untie_embeddings_and_output_weights")
    return FAMILIES[_field(cfg, "model")]["tied_embeddings"] if untie is None else not untie


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
        "normalization": fam["normalization"], "norm_epsilon": fam["norm_epsilon"], "activation": fam["activation"],
        "gated_linear_unit": fam["gated_linear_unit"], "add_bias_linear": fam["add_bias_linear"],
        "position_embedding_type": fam["position_embedding_type"], "tied_embeddings": tied_embeddings(cfg),
        "rotary_base": fam.get("rotary_base"), "rotary_percent": 1.0, "rotary_interleaved": False,
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
    from megatron.core.transformer.transformer_config import MLATransformerConfig, TransformerConfig

    from megatron_grow.config import recompute_modules, sequence_parallel

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
        layernorm_epsilon=fam["norm_epsilon"],
        gated_linear_unit=fam["gated_linear_unit"],
        activation_func=activation_func(fam["activation"]),
        add_bias_linear=fam["add_bias_linear"],
        hidden_dropout=cfg.hidden_dropout,
        attention_dropout=cfg.attention_dropout,
        init_method_std=cfg.init_method_std,
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
    stages = [int(x) for x in cfg.pipeline_layers.split(",")] if cfg.pipeline_layers else None
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
        qk_layernorm=True, rope_type="rope", rotary_base=FAMILIES[cfg.model]["rotary_base"],
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
        rotary_base=fam.get("rotary_base", 10000),
        parallel_output=True,
    )
    model.to(device)
    init_weights(model, cfg.seed, cfg.init_method_std, cfg.num_layers, mup.width_mult(cfg))
    mup.install(model, cfg)
    return model
