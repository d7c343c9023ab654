"""LLaMA3: RMSNorm, SwiGLU, RoPE (base 500000), grouped-query attention, untied head, no biases.

--rotary-base and --norm-epsilon set the RoPE base and the norm epsilon (Llama-2 and TinyLlama: RoPE
base 10000; transformers' default LlamaConfig: 10000 and 1e-6); --use-rope-scaling --rope-scaling-factor F
is Llama-3.1's RoPE scaling (rope_type llama3; Llama-3.1: 8, Llama-3.2: 32) with the frequency factors and
original context that megatron-core 0.16's RotaryEmbedding fixes (ROPE_SCALING), which are Llama-3.1's and 3.2's.
"""

# megatron-core's RotaryEmbedding._apply_scaling defaults, the only values it applies (tests/test_hf.py checks them)
ROPE_SCALING = {"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}

LLAMA3 = dict(
    normalization="RMSNorm",
    norm_epsilon=1e-5,
    gated_linear_unit=True,
    activation="silu",
    add_bias_linear=False,
    position_embedding_type="rope",
    rotary_base=500000,
    tied_embeddings=False,
    group_query_attention=True,  # (and multi-head attention: --num-query-groups = --num-attention-heads)
    presets={
        # 2 layers, width 128, 4 heads in 2 KV groups: trains in seconds on a CPU.
        "tiny": dict(num_layers=2, hidden_size=128, ffn_hidden_size=384, num_attention_heads=4,
                     num_query_groups=2, seq_length=128, vocab_size=128256),
        # Llama-3.2-1B: its embedding and head are tied
        "1b": dict(num_layers=16, hidden_size=2048, ffn_hidden_size=8192, num_attention_heads=32,
                   num_query_groups=8, seq_length=8192, vocab_size=128256, untie_embeddings_and_output_weights=False),
        "8b": dict(num_layers=32, hidden_size=4096, ffn_hidden_size=14336, num_attention_heads=32,
                   num_query_groups=8, seq_length=8192, vocab_size=128256),
    },
)
