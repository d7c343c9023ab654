"""muP (megatron_grow/mup.py): init scales, forward multipliers, LR multipliers, coordinate check."""

import importlib.util
import math
import os
import types

import pytest
import torch

import conftest
from conftest import ROOT
from megatron_grow import config, mup, platform, runstate
from megatron_grow.models import build_model
from megatron_grow.models.init import draw, global_names
from megatron_grow.models.names import is_residual_output

STD = 0.02




def cfg_for(model="llama3", **over):
    return conftest.cfg_for(model, **{"vocab_size": 1000, **over})


def width_cfg(model, hidden, **over):
    """Width ``hidden`` at a fixed head dim of 16 (heads = hidden / 16)."""
    heads = hidden // 16
    return cfg_for(model, hidden_size=hidden, ffn_hidden_size=2 * hidden, num_attention_heads=heads,
                   num_query_groups=heads, kv_channels=16, **over)


def logits_of(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 1000, (2, 16), generator=g)
    with torch.no_grad():
        return model(tokens, torch.arange(16).expand(2, 16), None)


def expected_std(name, ndim, m, num_layers):
    """The rule, written out independently of megatron_grow.mup."""
    if ndim == 1:
        return 0.0
    std = STD / math.sqrt(m) if "decoder.layers." in name else STD
    return std / math.sqrt(2 * num_layers) if is_residual_output(name) else std


@pytest.mark.parametrize("model", ["llama3", "gpt2"])
def test_init_std_follows_the_mup_rule_at_two_widths(world, model):
    for hidden, m in ((64, 1), (256, 4)):
        cfg = width_cfg(model, hidden, mup=True, mup_base_hidden_size=64, num_layers=2)
        assert mup.width_mult(cfg) == m
        gpt = build_model(cfg, 1, 1, torch.device("cpu"))
        names = global_names(gpt)
        kinds = set()
        for n, p in gpt.named_parameters():
            want = expected_std(names[n], p.ndim, m, 2)
            if p.ndim == 1:
                assert torch.all((p == 1) | (p == 0)), n  # norm scales 1, biases 0
                continue
            kinds.add(names[n].split(".")[-2])
            assert p.std().item() == pytest.approx(want, rel=0.05), (n, hidden)
            assert abs(p.mean().item()) < want * 0.1, n
        assert {"linear_qkv", "linear_proj", "linear_fc1", "linear_fc2", "word_embeddings"} <= kinds
        assert ("output_layer" in kinds) == (model == "llama3")  # gpt2 ties its head
        assert ("position_embeddings" in kinds) == (model == "gpt2")


@pytest.mark.parametrize("model", ["llama3", "gpt2"])
def test_mup_off_is_todays_init_bit_for_bit(world, model):
    """Standard parametrisation: weights equal the pre-muP rule exactly; no hooks; muP at m = 1 is SP."""
    cfg = cfg_for(model, num_layers=2)
    sp = build_model(cfg, 1, 1, torch.device("cpu"))
    names = global_names(sp)
    for n, p in sp.named_parameters():
        if p.ndim == 1:
            continue
        std = STD / math.sqrt(2.0 * 2) if is_residual_output(names[n]) else STD
        ref = draw(cfg.seed, names[n], p.shape, (0, p.shape[0]), (0, p.shape[1]), "cpu").mul_(std)
        assert torch.equal(p, ref), n
    assert sp.mup_hooks == {"output": [], "depth": []}
    base = build_model(cfg_for(model, num_layers=2, mup=True, mup_base_hidden_size=cfg.hidden_size), 1, 1,
                       torch.device("cpu"))
    for (n, p), q in zip(sp.named_parameters(), base.parameters(), strict=True):
        assert torch.equal(p, q), n
    assert torch.equal(logits_of(sp), logits_of(base))


@pytest.mark.parametrize("model", ["llama3", "gpt2"])
def test_output_multiplier_scales_logits_by_one_over_m(world, model):
    cfg = width_cfg(model, 128, mup=True, mup_base_hidden_size=32, num_layers=1)
    gpt = build_model(cfg, 1, 1, torch.device("cpu"))
    assert len(gpt.mup_hooks["output"]) == 1
    with_hook = logits_of(gpt)
    gpt.mup_hooks["output"][0].remove()
    without = logits_of(gpt)
    assert without.abs().max() > 0
    torch.testing.assert_close(with_hook, without / 4, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("model", ["llama3", "gpt2"])
def test_depth_multiplier_scales_residual_branches(world, model):
    """sqrt(B_L / L) on every branch output == the same model with linear_proj / linear_fc2 weights
    and biases scaled by it (and no depth hooks)."""
    cfg = width_cfg(model, 64, mup=True, mup_base_hidden_size=64, mup_base_num_layers=1, num_layers=4)
    assert mup.depth_mult(cfg) == pytest.approx(0.5)
    gpt = build_model(cfg, 1, 1, torch.device("cpu"))
    for layer in gpt.decoder.layers:  # non-zero biases, so "bias included" is tested (gpt2)
        for n, p in layer.named_parameters():
            if n.endswith(".bias"):
                p.data.normal_(0, 0.1)
    assert len(gpt.mup_hooks["depth"]) == 2 * 4 and not gpt.mup_hooks["output"]  # m = 1
    hooked = logits_of(gpt)
    for h in gpt.mup_hooks["depth"]:
        h.remove()
    plain = logits_of(gpt)
    assert not torch.allclose(hooked, plain, atol=1e-4)
    with torch.no_grad():
        for layer in gpt.decoder.layers:
            for n, p in layer.named_parameters():
                if n.startswith(("self_attention.linear_proj.", "mlp.linear_fc2.")):
                    p.mul_(0.5)
    torch.testing.assert_close(hooked, logits_of(gpt), rtol=1e-5, atol=1e-6)
    no_depth = width_cfg(model, 64, mup=True, mup_base_hidden_size=64, num_layers=4)
    assert mup.depth_mult(no_depth) == 1.0
    assert build_model(no_depth, 1, 1, torch.device("cpu")).mup_hooks["depth"] == []


def test_lr_multiplier_values(world):
    w2, w1 = torch.zeros(4, 4), torch.zeros(4)
    adam = cfg_for("llama3", hidden_size=512, mup=True, mup_base_hidden_size=128)
    for name in ("decoder.layers.0.self_attention.linear_qkv.weight",
                 "decoder.layers.3.self_attention.linear_proj.weight",
                 "decoder.layers.1.mlp.linear_fc1.weight", "decoder.layers.1.mlp.linear_fc2.weight"):
        assert mup.lr_multiplier(adam, name, w2) == 0.25, name
    for name, p in (("embedding.word_embeddings.weight", w2), ("embedding.position_embeddings.weight", w2),
                    ("output_layer.weight", w2), ("decoder.layers.0.mlp.linear_fc2.bias", w1),
                    ("decoder.layers.0.input_layernorm.weight", w1), ("decoder.final_layernorm.weight", w1)):
        assert mup.lr_multiplier(adam, name, p) == 1.0, name
    muon = cfg_for("llama3", hidden_size=512, mup=True, mup_base_hidden_size=128, optimizer="muon-nsgd")
    off = cfg_for("llama3", hidden_size=512)
    for c in (muon, off):
        assert mup.lr_multiplier(c, "decoder.layers.0.mlp.linear_fc1.weight", w2) == 1.0
        assert mup.lr_multiplier(c, "output_layer.weight", w2) == 1.0


def test_optimizer_groups_apply_the_lr_multiplier(world):
    cfg = width_cfg("llama3", 128, mup=True, mup_base_hidden_size=32, num_layers=1)
    state = runstate.build_state(cfg, torch.device("cpu"))
    model = state.module
    names = global_names(model)
    by_id = {id(p): names[n] for n, p in model.named_parameters()}
    seen = 0
    for g in state.optimizer.param_groups:
        for p in g["params"]:
            want = 0.25 if "decoder.layers." in by_id[id(p)] and p.ndim == 2 else 1.0
            assert g["max_lr"] == pytest.approx(cfg.lr * want), by_id[id(p)]
            seen += 1
    assert seen == len(names)


def test_growth_keeps_mup_at_the_target_depth(world):
    """Growth builds the target from grown_config: same width multiplier, target depth (std and
    depth multiplier); expand_checkpoint rebuilds its config from the checkpoint's, which keeps muP."""
    cfg = width_cfg("llama3", 128, mup=True, mup_base_hidden_size=32, mup_base_num_layers=1, num_layers=1,
                    grow_to_layers=4, grow_at_iter=10, train_iters=20)
    target = config.grown_config(cfg)
    assert (mup.width_mult(target), mup.depth_mult(target)) == (4.0, 0.5)
    common = runstate.common_state(cfg, types.SimpleNamespace(consumed_samples=0, ledger={}, skipped_steps=0))["config"]
    assert (common["mup"], common["mup_base_hidden_size"], common["mup_base_num_layers"]) == (True, 32, 1)
    gpt = build_model(target, 1, 1, torch.device("cpu"))
    proj = dict(gpt.named_parameters())["decoder.layers.3.self_attention.linear_proj.weight"]
    assert proj.std().item() == pytest.approx(STD / 2 / math.sqrt(8), rel=0.05)


def test_coordinate_check_mup_is_flatter_than_sp(world, tmp_path):
    """tools/mup_coord_check.py at tiny sizes: muP's logit and hidden-activation scales depend on
    width much less than SP's. Measured here: logit slope SP +0.86, muP +0.11; with an extra 1/m on
    the untied head's init and LR (on top of the 1/m output multiplier) muP's is -0.84 and this fails."""
    spec = importlib.util.spec_from_file_location("mup_coord_check", os.path.join(ROOT, "tools", "mup_coord_check.py"))
    mup_coord_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mup_coord_check)
    args = mup_coord_check.parse(["--widths", "32,64,128", "--steps", "6", "--seq-length", "32", "--out", ""])
    res = mup_coord_check.coord_check(args)
    platform.init_model_parallel(1, 1, seed=1)
    sp, mu = res["slopes"]["sp"], res["slopes"]["mup"]
    assert set(sp) == {"embedding", "layer_1", "layer_2", "logits"}
    assert len(res["mup"]["logits"]) == 6 and len(res["mup"]["logits"][0]) == 3
    assert abs(mu["logits"]) < min(0.4, 0.6 * abs(sp["logits"])), res["slopes"]
    assert sp["layer_2"] > 1.0 and abs(mu["layer_2"]) < 0.5, res["slopes"]
    assert "verdict" in mup_coord_check.table(res)
