"""The compute ledger: hand counts, Megatron-LM's own formula, the 6N conventions vs built models."""

import dataclasses

import pytest
import torch

from conftest import cfg_for
from megatron_grow import flops
from megatron_grow.models import build_model, padded_vocab_size


def test_hand_count():
    """llama3 tiny, 1 layer, h=128, 4 heads of 32 (2 KV groups), ffn 384, V=1000 (padded 1024), s=128."""
    cfg = cfg_for("llama3", num_layers=1, vocab_size=1000)
    qkv = 128 * (4 * 32 + 2 * 2 * 32)
    proj = 128 * 128
    mlp = 3 * 128 * 384  # gated: gate, up, down
    head = 1024 * 128
    attn = 2 * 128 * 4 * 32  # Q K^T and A V over the causal half of 128 positions: 2 x (2 x 64 x 128) per token
    assert flops.train_flops(cfg, 10) == 3 * 10 * (2 * (qkv + proj + mlp + head) + attn)
    led = flops.ledger(cfg, 10)
    assert led["flops"] == flops.train_flops(cfg, 10)
    assert led["flops_6n"] == 6 * 10 * flops.param_count(cfg)
    assert led["flops_6n_nonemb"] == 6 * 10 * (qkv + proj + mlp + 2 * 128 + 128)  # + 2 layer norms + final norm


def test_hand_count_mla_moe():
    """deepseek-v3 tiny, 2 layers (dense, then MoE), h=128, 4 heads; MLA q rank 64, kv rank 64, q/k
    head 32 + 16 RoPE, v head 32; dense ffn 384; 8 experts of 64, top-2, one shared expert of 64."""
    cfg = cfg_for("deepseek-v3", num_layers=2, vocab_size=1000)
    attn_w = (128 * 64 + 64 * 4 * 48) + 128 * (64 + 16) + 64 * 4 * (32 + 32) + 4 * 32 * 128  # q, kv down/up, proj
    dense = 3 * 128 * 384
    moe_active = 128 * 8 + 3 * 128 * (2 * 64 + 64)  # router, 2 routed experts, the shared expert
    moe_total = 128 * 8 + 3 * 128 * (8 * 64 + 64)
    head = 1024 * 128
    attn = 128 * 4 * (48 + 32)  # causal half of Q K^T (q/k head 48) and A V (v head 32)
    assert flops.train_flops(cfg, 10) == 3 * 10 * (2 * (2 * attn_w + dense + moe_active + head) + 2 * attn)
    norms = 2 * (2 * 128 + 64 + 64) + 128  # per layer: 2 RMSNorms + q/kv latent norms; final norm
    assert flops.param_count(cfg, embeddings=False) == 2 * attn_w + dense + moe_total + norms
    assert flops.ledger(cfg, 10)["flops_6n_nonemb"] == 6 * 10 * (2 * attn_w + dense + moe_active + norms)


def megatron_lm(cfg, batch: int) -> float:
    """Megatron-LM's num_floating_point_operations (megatron/training/training.py, dense GPT with
    GQA, no MoE/MLA/MTP), written out here from its terms: per token 3 (fwd, wgrad, dgrad) x 2 (FMA)
    x [h (q + k + v) + q s / 2 x 2 + q h + h ffn x (3 if swiglu else 2)] per layer + 3 x 2 x h V."""
    fam = flops.FAMILIES[cfg.model]
    kv = cfg.kv_channels or cfg.hidden_size // cfg.num_attention_heads
    q, k = kv * cfg.num_attention_heads, kv * cfg.num_query_groups
    h, s = cfg.hidden_size, cfg.seq_length
    attn = 3 * 2 * (h * (q + 2 * k) + q * s / 2 * 2 + q * h)
    mlp = 3 * 2 * h * cfg.ffn_hidden_size * (3 if fam["gated_linear_unit"] else 2)
    logit = 3 * 2 * h * padded_vocab_size(cfg.vocab_size)
    return batch * s * (cfg.num_layers * (attn + mlp) + logit)


@pytest.mark.parametrize("model,preset", [("gpt2", "124m"), ("gpt2", "7b"), ("llama3", "1b"), ("llama3", "8b"),
                                          ("llama3", "tiny")])
@pytest.mark.parametrize("layers", [0, 1, None])
def test_matches_megatron_lm_formula(model, preset, layers):
    cfg = cfg_for(model, preset)
    if layers is not None:
        cfg = dataclasses.replace(cfg, num_layers=layers)
    batch = 8
    assert flops.train_flops(cfg, batch * cfg.seq_length) == pytest.approx(megatron_lm(cfg, batch), rel=1e-12)


@pytest.mark.parametrize("model", ["gpt2", "llama3"])
@pytest.mark.parametrize("layers", [0, 1, 3])
def test_6n_conventions_count_the_built_model(world, model, layers):
    """N (all parameters) and N without embeddings (token, position, untied head) vs a real model."""
    cfg = cfg_for(model, num_layers=layers, vocab_size=1000)
    m = build_model(cfg, 1, 1, torch.device("cpu"))
    total = sum(p.numel() for p in m.parameters())
    emb = sum(p.numel() for n, p in m.named_parameters()
              if n.startswith(("embedding.", "output_layer.")))
    assert flops.param_count(cfg) == total
    assert flops.param_count(cfg, embeddings=False) == total - emb
    led = flops.ledger(cfg, 7)
    assert (led["flops_6n"], led["flops_6n_nonemb"]) == (6 * 7 * total, 6 * 7 * (total - emb))


def test_paper_flops_ratio_conventions():
    """The method's cost model: 6 tokens (tau N_src + (T - tau) N_tgt). At GPT2-124M, 0 layers -> 12
    at tau = 0.8 T, the saving is ~80% only without embeddings, ~50-55% with them (method.md)."""
    tgt = cfg_for("gpt2", "124m")
    src = dataclasses.replace(tgt, num_layers=0)
    for emb, lo, hi in ((True, 0.45, 0.5), (False, 0.199, 0.201)):
        ratio = (0.8 * flops.param_count(src, emb) + 0.2 * flops.param_count(tgt, emb)) / flops.param_count(tgt, emb)
        assert lo < ratio < hi, (emb, ratio)


def test_ledger_accumulates():
    cfg = cfg_for("llama3", num_layers=1, vocab_size=1000)
    total = flops.empty_ledger()
    flops.add(total, flops.ledger(cfg, 5), 5, 0.5)
    flops.add(total, {}, 0, 2.0)  # growth: time, no tokens
    flops.add(total, flops.ledger(cfg, 5), 5, 0.5)
    assert total["cum_flops"] == flops.train_flops(cfg, 10) and total["cum_tokens"] == 10
    assert total["train_seconds"] == 3.0


def test_mfu_arithmetic_and_peaks():
    """MFU = exact model FLOPs of an iteration / (seconds x GPUs x peak). By hand: LLaMA3-8B on 4M tokens
    (1024 x 4096) is 3 x 2 x (matmul weights + attention term) FLOPs per token; in 10 s on 128 H100s
    at 989 TFLOP/s bf16 that is 0.1705 of peak. Unknown GPUs, precisions and CPUs have no peak."""
    from megatron_grow.flops import mfu, peak_flops

    assert peak_flops("NVIDIA H100 80GB HBM3", "bf16") == 989e12 and peak_flops("NVIDIA H200", "fp8") == 1979e12
    assert peak_flops("NVIDIA A100-SXM4-80GB", "fp8") is None and peak_flops("cpu", "bf16") is None
    cfg = cfg_for(preset="8b")
    tokens = 1024 * 4096
    h, ffn, L, V, s = 4096, 14336, 32, padded_vocab_size(128256), 4096
    weights = L * (h * (4096 + 2 * 8 * 128) + h * h + 3 * h * ffn) + V * h  # qkv, proj, gated MLP; the head
    attn = L * 2 * 32 * 128 * s  # Q K^T and A V, causal half, per token
    by_hand = 3 * 2 * (weights + attn) * tokens
    assert flops.ledger(cfg, tokens)["flops"] == by_hand
    assert mfu(by_hand, 10.0, 128, 989e12) == pytest.approx(by_hand / (10 * 128 * 989e12), rel=1e-12)
    assert mfu(by_hand, 10.0, 128, 989e12) == pytest.approx(0.1705, abs=1e-4)


def test_metrics_lines_stay_strict_json_with_gpu_lists():
    """A GPU field NVML cannot read is NaN in its per-rank list; the metrics line writes it as null."""
    import json

    from megatron_grow.monitor import strict

    line = json.dumps(strict({"gpu_power_w": [301.5, float("nan")], "lm_loss": float("inf"), "mfu": 0.4}),
                      allow_nan=False)
    assert json.loads(line) == {"gpu_power_w": [301.5, None], "lm_loss": None, "mfu": 0.4}


def test_llama3_1b_preset_is_llama_3_2_1b():
    """The 1b preset ties its head as Llama-3.2-1B does: 1,235,814,400 parameters, its published count;
    --untie-embeddings-and-output-weights adds the 128256 x 2048 head."""
    assert flops.param_count(cfg_for(preset="1b")) == 1_235_814_400
    untied = cfg_for(preset="1b", untie_embeddings_and_output_weights=True)
    assert flops.param_count(untied) == 1_235_814_400 + 128256 * 2048
