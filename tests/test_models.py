"""Models in one process: parameter counts, 0/1-layer models, init in every layout, SDPA attention vs
megatron's own."""

import dataclasses
import os
import sys

import pytest
import torch

from conftest import ROOT, cfg_for, run
from megatron_grow import flops
from megatron_grow.models import build_model, init


@pytest.mark.parametrize("model", ["gpt2", "llama3", "deepseek-v3"])
@pytest.mark.parametrize("layers", [0, 1, 2])
def test_param_count_matches_built_model(world, model, layers):
    cfg = cfg_for(model, num_layers=layers, vocab_size=1000)
    m = build_model(cfg, 1, 1, torch.device("cpu"))
    assert sum(p.numel() for p in m.parameters()) == flops.param_count(cfg)
    tokens = torch.randint(0, 1000, (2, 16))
    logits = m(tokens, torch.arange(16).expand(2, 16), None)
    assert logits.shape == (2, 16, 1024) and torch.isfinite(logits).all()


def test_paper_parameter_counts():
    """GPT2-124M's 0- and 1-layer sources are 39M and 46M; the 7B target's are 0.15B and 0.27B."""
    def count(preset, layers):
        return flops.param_count(dataclasses.replace(cfg_for("gpt2", preset), num_layers=layers)) / 1e6

    assert 39 <= count("124m", 0) < 40 and 46 <= count("124m", 1) < 47
    assert 120 < count("124m", 12) < 128
    # 7B: 0.15B of token embedding + 6M of learned positions; 1 layer adds 0.11B
    assert 0.15 <= count("7b", 0) / 1e3 < 0.17 and 0.26 <= count("7b", 1) / 1e3 <= 0.28
    assert 6.8 < count("7b", 60) / 1e3 < 7.2


def test_deepseek_presets_active_and_total_parameters():
    """small: ~0.2B active non-embedding parameters (1.5B total); 16b-a2.6b (DeepSeek-V2-Lite shape):
    15.7B total, 2.7B active."""
    def count(preset, **kw):
        return flops.param_count(cfg_for("deepseek-v3", preset), **kw) / 1e9

    assert 0.19 < count("small", active=True, embeddings=False) < 0.21 and 1.4 < count("small") < 1.6
    assert 15.0 < count("16b-a2.6b") < 16.5 and 2.3 < count("16b-a2.6b", active=True) < 2.8
    # a 0-layer deepseek is embedding + head; an MoE layer's FLOPs count its active experts only
    tiny = cfg_for("deepseek-v3", num_layers=2)
    assert flops.layer_matmul_params(tiny, "moe", active=True) < flops.layer_matmul_params(tiny, "moe", active=False)


def test_layout_independent_init(world):
    """Weights depend on (seed, name) only: same seed -> same weights, other seed -> other weights."""
    a = build_model(cfg_for("llama3", vocab_size=1000), 1, 1, torch.device("cpu"))
    b = build_model(cfg_for("llama3", vocab_size=1000), 1, 1, torch.device("cpu"))
    c = build_model(cfg_for("llama3", vocab_size=1000, seed=7), 1, 1, torch.device("cpu"))
    for (n, p), q, r in zip(a.named_parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(p, q), n
        if p.ndim == 2:
            assert not torch.equal(p, r), n
    # the two layers' matrices differ (seeded by global name, not by local position)
    w0 = dict(a.named_parameters())["decoder.layers.0.self_attention.linear_qkv.weight"]
    w1 = dict(a.named_parameters())["decoder.layers.1.self_attention.linear_qkv.weight"]
    assert not torch.equal(w0, w1)


def test_init_is_the_same_in_every_layout(world, tmp_path):
    """Every weight, gathered from its shards, equals the TP1/PP1 one: LLaMA3 at TP4 (fused QKV with
    GQA split over the ranks, gated fc1, row-parallel proj/fc2, vocab-parallel embedding and head) and
    TP2 x PP2, GPT2 at TP2 x PP2 (positions, biases, the tied head on the last stage), DeepSeekV3 at
    TP2 x EP2 (MLA, experts split over ranks and expert-TP, shared expert, router)."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from init_layout_check import LAYOUTS, args

    out = tmp_path / "gathered.pt"
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "4",
         os.path.join(ROOT, "tests", "init_layout_check.py"), str(out)], timeout=300)
    got = torch.load(out)
    from megatron_grow import config
    from megatron_grow.finalize import finalize

    for layout, (model, *_) in LAYOUTS.items():
        ref = build_model(finalize(config.parse_args(args(model)), 1, "cpu"), 1, 1, torch.device("cpu"))
        names = init.global_names(ref)
        want = {names[n]: p for n, p in ref.named_parameters()}
        assert set(got[layout]) == set(want), layout
        for n, p in want.items():
            assert torch.equal(got[layout][n], p), (layout, n)


@pytest.mark.parametrize("tp", [2, 4])
@pytest.mark.parametrize("dim,gated", [(0, False), (0, True), (1, False)], ids=["column", "gated-fc1", "row"])
@pytest.mark.parametrize("size", [4096, 1200], ids=["tile-aligned", "unaligned"])
def test_a_rank_draws_only_the_tiles_of_its_shard(monkeypatch, tp, dim, gated, size):
    """The shards of a multi-tile tensor concatenate to the TP1 tensor (tile edges inside shards or
    not), and each rank draws only the tiles its shard overlaps: exactly 1/TP of the tensor when the
    shards are whole tiles, at most a tile more on each side of each span when not."""
    shape = (size, 1000) if dim == 0 else (1000, size)
    drawn = []
    tile = init._tile

    def counted(*a):
        t = tile(*a)
        drawn.append(t.numel())
        return t

    monkeypatch.setattr(init, "_tile", counted)
    kw = dict(seed=3, std=0.02, num_layers=4, device="cpu", dtype=torch.float32)
    name = "decoder.layers.1.mlp.linear_fc1.weight"
    full = init.shard_init(name, shape, None, 1, 0, False, **kw)
    assert sum(drawn) == full.numel()
    assert full.std().item() == pytest.approx(0.02, rel=0.02) and abs(full.mean().item()) < 1e-3
    shards, per_rank = [], []
    for rank in range(tp):
        drawn.clear()
        shards.append(init.shard_init(name, shape, dim, tp, rank, gated, **kw))
        per_rank.append(sum(drawn))
    if gated:
        halves = [s.chunk(2, dim=dim) for s in shards]
        shards = [h[0] for h in halves] + [h[1] for h in halves]
    assert torch.equal(torch.cat(shards, dim=dim), full)
    spans = 2 if gated else 1
    if size % (256 * tp * spans) == 0:
        assert per_rank == [full.numel() // tp] * tp
    else:
        assert max(per_rank) <= full.numel() // tp + spans * 2 * 256 * 1000, per_rank


def test_init_std_rules():
    """N(0, std) within 2%, the residual outputs std / sqrt(2 L), biases 0 and norm scales 1."""
    kw = dict(dim=None, tp=1, tp_rank=0, gated=False, seed=3, std=0.02, num_layers=4, device="cpu",
              dtype=torch.float32)
    qkv = init.shard_init("decoder.layers.0.self_attention.linear_qkv.weight", (768, 512), **kw)
    proj = init.shard_init("decoder.layers.0.self_attention.linear_proj.weight", (512, 512), **kw)
    assert qkv.std().item() == pytest.approx(0.02, rel=0.02) and abs(qkv.mean().item()) < 1e-3
    assert proj.std().item() == pytest.approx(0.02 / 8 ** 0.5, rel=0.02)
    assert not torch.equal(qkv[:512], proj * 8 ** 0.5)  # tiles seeded by name, not only by position
    assert torch.equal(init.shard_init("decoder.layers.0.self_attention.linear_qkv.bias", (768,), **kw),
                       torch.zeros(768))
    assert torch.equal(init.shard_init("decoder.final_layernorm.weight", (512,), **kw), torch.ones(512))


@pytest.mark.parametrize("groups", [4, 2, 1])
def test_sdpa_attention_matches_megatron_local(world, groups):
    """Our SDPA core attention equals megatron-core's DotProductAttention (causal, GQA) in float64."""
    from megatron.core.transformer.dot_product_attention import DotProductAttention
    from megatron.core.transformer.enums import AttnMaskType

    from megatron_grow.models import transformer_config
    from megatron_grow.models.attention import SDPAttention

    cfg = cfg_for("llama3", num_query_groups=groups)
    tc = transformer_config(cfg, 1, 1, "cpu")
    s, b, n, d = 16, 2, 4, 32
    q = torch.randn(s, b, n, d, dtype=torch.float64)
    k, v = (torch.randn(s, b, groups, d, dtype=torch.float64) for _ in range(2))
    mask = torch.triu(torch.ones(s, s, dtype=torch.bool), diagonal=1)[None, None]
    ref = DotProductAttention(tc, 1, AttnMaskType.causal, "self")(q, k, v, mask)
    got = SDPAttention(tc, 1, AttnMaskType.causal, "self")(q, k, v, None)
    assert torch.allclose(got, ref, atol=1e-12)


def test_sdpa_attention_value_head_size_may_differ(world):
    from megatron.core.transformer.enums import AttnMaskType

    from megatron_grow.models import transformer_config
    from megatron_grow.models.attention import SDPAttention

    tc = transformer_config(cfg_for("llama3", num_query_groups=4), 1, 1, "cpu")
    q, k = torch.randn(8, 1, 4, 48), torch.randn(8, 1, 4, 48)
    v = torch.randn(8, 1, 4, 32)
    out = SDPAttention(tc, 1, AttnMaskType.causal, "self", softmax_scale=48 ** -0.5)(q, k, v, None)
    ref = torch.softmax((q.permute(1, 2, 0, 3) @ k.permute(1, 2, 3, 0)) / 48 ** 0.5
                        + torch.full((8, 8), float("-inf")).triu(1), -1) @ v.permute(1, 2, 0, 3)
    assert out.shape == (8, 1, 128)
    assert torch.allclose(out, ref.permute(2, 0, 1, 3).reshape(8, 1, 128), atol=1e-5)
