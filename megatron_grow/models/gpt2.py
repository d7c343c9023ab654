"""GPT2: learned absolute positions, LayerNorm, GeLU MLP (tanh approximation) with biases, tied embedding/head."""

GPT2 = dict(
    normalization="LayerNorm",
    norm_epsilon=1e-5,
    gated_linear_unit=False,
    activation="gelu_tanh",  # OpenAI's tanh approximation (HF "gelu_new"), as GPT-2 was trained
    add_bias_linear=True,
    position_embedding_type="learned_absolute",
    tied_embeddings=True,
    group_query_attention=True,  # (megatron-core builds it; HF's GPT-2 has none: export refuses it)
    presets={
        # 2 layers, width 128: trains in seconds on a CPU; for tests and smoke runs.
        "tiny": dict(num_layers=2, hidden_size=128, ffn_hidden_size=512, num_attention_heads=4,
                     seq_length=128, vocab_size=50257),
        "124m": dict(num_layers=12, hidden_size=768, ffn_hidden_size=3072, num_attention_heads=12,
                     seq_length=1024, vocab_size=50257),
        # The paper's 7B target: 60 layers, hidden 3072 (0-layer source 0.15B, 1-layer 0.27B).
        "7b": dict(num_layers=60, hidden_size=3072, ffn_hidden_size=12288, num_attention_heads=24,
                   seq_length=2048, vocab_size=50257),
    },
)
