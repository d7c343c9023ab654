"""DeepSeekV3-MoE: multi-latent attention (low-rank q/kv projections, decoupled RoPE head dim),
fine-grained MoE layers with top-k routing and a shared expert, the first k layers dense. The router
as V3's: sigmoid scores with an expert bias (aux-loss-free balancing), group-limited top-k (the
experts in --moe-router-num-groups groups, a token's experts from --moe-router-group-topk of them,
V3: 8 and 4) and the routed weights scaled by --moe-router-topk-scaling-factor (V3: 2.5); the tiny
and small presets scale V3's grouping to their expert counts, keeping V3's top-k / group-topk = 2
(groups are ranked by the sum of that many of their scores; HF's DeepseekV3 always sums 2).

RMSNorm, SwiGLU, untied head, no biases. Plain RoPE (base 10000; DeepSeek's YaRN is a
long-context extension, not part of pretraining). Layer kinds follow the global layer index:
layer i is dense when i < moe_first_dense_layers or i is off the --moe-layer-freq grid, else MoE,
so a model of any depth (and a grown one) has the same pattern from the bottom up.
"""

DEEPSEEK_V3 = dict(
    normalization="RMSNorm",
    norm_epsilon=1e-6,
    gated_linear_unit=True,
    activation="silu",
    add_bias_linear=False,
    position_embedding_type="rope",
    rotary_base=10000,
    tied_embeddings=False,
    group_query_attention=False,  # (multi-latent attention instead)
    multi_latent_attention=True,
    moe=True,
    presets={
        # 2 layers (1 dense + 1 MoE), width 128, 8 experts of width 64, top-2, one shared expert:
        # trains in seconds on a CPU; for tests and smoke runs.
        "tiny": dict(num_layers=2, hidden_size=128, ffn_hidden_size=384, num_attention_heads=4, seq_length=128,
                     vocab_size=129280, q_lora_rank=64, kv_lora_rank=64, qk_head_dim=32, qk_pos_emb_head_dim=16,
                     v_head_dim=32, num_experts=8, moe_router_topk=2, moe_ffn_hidden_size=64,
                     moe_shared_expert_intermediate_size=64, moe_first_dense_layers=1,
                     moe_router_topk_scaling_factor=2.5, moe_router_num_groups=2, moe_router_group_topk=1),
        # ~0.2B active non-embedding parameters (0.46B active with the 129k-vocab embedding and head,
        # 1.5B total): 16 layers of width 1024, 64 experts top-6 + 2 shared
        "small": dict(num_layers=16, hidden_size=1024, ffn_hidden_size=4096, num_attention_heads=16,
                      seq_length=4096, vocab_size=129280, q_lora_rank=384, kv_lora_rank=256, qk_head_dim=64,
                      qk_pos_emb_head_dim=32, v_head_dim=64, num_experts=64, moe_router_topk=6,
                      moe_ffn_hidden_size=384, moe_shared_expert_intermediate_size=768, moe_first_dense_layers=1,
                      moe_router_topk_scaling_factor=2.5, moe_router_num_groups=8, moe_router_group_topk=3),
        # DeepSeek-V2-Lite shape (15.7B total, 2.4-2.6B active): 27 layers, 64 experts top-6 + 2 shared; its
        # routing is ungrouped and unscaled (V2-Lite scores with softmax: --moe-router-score-function softmax
        # --no-moe-router-enable-expert-bias for its router)
        "16b-a2.6b": dict(num_layers=27, hidden_size=2048, ffn_hidden_size=10944, num_attention_heads=16,
                          seq_length=4096, vocab_size=102400, q_lora_rank=None, kv_lora_rank=512,
                          qk_head_dim=128, qk_pos_emb_head_dim=64, v_head_dim=128, num_experts=64,
                          moe_router_topk=6, moe_ffn_hidden_size=1408, moe_shared_expert_intermediate_size=2816,
                          moe_first_dense_layers=1),
    },
)


def moe_layer_pattern(num_layers: int, first_dense: int, freq: int) -> list[int]:
    """1 for an MoE layer, 0 for a dense one, by global layer index."""
    return [int(i >= first_dense and (i - first_dense) % freq == 0) for i in range(num_layers)]
