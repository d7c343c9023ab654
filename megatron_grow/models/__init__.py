"""Model families: presets, megatron-core TransformerConfig and layer specs, GPTModel construction.

A family is a dict of fixed architecture choices (norm, activation, positions, tying) plus
size presets. Every preset field can be overridden by the flag of the same name.
"""

from __future__ import annotations

import torch

from megatron_grow.models.gpt2 import GPT2
from megatron_grow.models.llama3 import LLAMA3

FAMILIES = {"gpt2": GPT2, "llama3": LLAMA3}



def preset(family: str, name: str) -> dict:
    return dict(FAMILIES[family]["presets"][name])


def padded_vocab_size(vocab_size: int, divisible_by: int = 128) -> int:
    """Vocab padded to a multiple of 128, independent of TP so every layout has the same shapes."""
    return -(-vocab_size // divisible_by) * divisible_by


def transformer_config(cfg, tp: int, pp: int, device: str):
    """megatron-core TransformerConfig for a RunConfig ``cfg`` at a (tp, pp) layout."""
    from megatron.core.transformer.transformer_config import TransformerConfig

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
        activation_func=fam["activation_func"],
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
        # megatron's own init runs (it also tags each weight with its TP partition dim), then
        # megatron_grow.models.init overwrites every weight layout-independently.
        perform_initialization=True,
        deallocate_pipeline_outputs=device == "cuda",
        num_layers_in_first_pipeline_stage=cfg.decoder_first_pipeline_num_layers,
        num_layers_in_last_pipeline_stage=cfg.decoder_last_pipeline_num_layers,
    )
    stages = [int(x) for x in cfg.pipeline_layers.split(",")] if cfg.pipeline_layers else None
    if stages and pp > 1:  # explicit per-stage layer counts, as a megatron pipeline layout
        kw["pipeline_model_parallel_layout"] = (
            [["embedding"] + ["decoder"] * stages[0]] + [["decoder"] * n for n in stages[1:-1]]
            + [["decoder"] * stages[-1] + ["loss"]])
    if cfg.num_layers == 0:  # megatron's default scales by 1/sqrt(2 L); init.py applies our rule
        from megatron.core.utils import init_method_normal

        kw["output_layer_init_method"] = init_method_normal(cfg.init_method_std)
    return TransformerConfig(**kw)


def layer_spec(cfg):
    """Layer spec: megatron's local modules with our SDPA core attention, or Transformer Engine."""
    from megatron.core.models.gpt import gpt_layer_specs as specs

    norm = FAMILIES[cfg.model]["normalization"]
    if cfg.transformer_impl == "transformer_engine":
        return specs.get_gpt_layer_with_transformer_engine_spec(normalization=norm)
    from megatron_grow.models.attention import SDPAttention

    spec = specs.get_gpt_layer_local_spec(normalization=norm)
    spec.submodules.self_attention.submodules.core_attention = SDPAttention
    return spec


def build_model(cfg, tp: int, pp: int, device: torch.device):
    """This rank's GPTModel stage for ``cfg`` at layout (tp, pp), initialised from (seed, name).

    With --mup the init is muP-scaled and the muP forward multipliers are installed
    (megatron_grow/mup.py); both follow ``cfg``'s width and depth (the target's, when growing)."""
    from megatron.core import parallel_state as ps
    from megatron.core.models.gpt import GPTModel

    from megatron_grow import mup
    from megatron_grow.models.init import init_weights

    fam = FAMILIES[cfg.model]
    config = transformer_config(cfg, tp, pp, device.type)
    model = GPTModel(
        config=config,
        transformer_layer_spec=layer_spec(cfg),
        vocab_size=padded_vocab_size(cfg.vocab_size),
        max_sequence_length=cfg.max_position_embeddings or cfg.seq_length,
        pre_process=ps.is_pipeline_first_stage(),
        post_process=ps.is_pipeline_last_stage(),
        share_embeddings_and_output_weights=fam["tied_embeddings"],
        position_embedding_type=fam["position_embedding_type"],
        rotary_base=fam.get("rotary_base", 10000),
        parallel_output=True,
    )
    model.to(device)
    init_weights(model, cfg.seed, cfg.init_method_std, cfg.num_layers, mup.width_mult(cfg))
    mup.install(model, cfg)
    return model
