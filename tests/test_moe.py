"""DeepSeekV3-MoE (MLA + MoE + shared expert): layouts with expert parallelism, growth, resume, metrics."""

import sys

import pytest
import torch

from conftest import assert_close, grow_both_ways, load_state, losses, read_metrics, run, torchrun
from megatron_grow.growth.plan import make_plan, problems
from megatron_grow.models import growth_kinds

# a tiny MLA + MoE model: width 64, 8 experts of 32 (top-2) + a shared expert, 2 KV-latent ranks of 32
ARGS = ["--model", "deepseek-v3", "--preset", "tiny", "--hidden-size", "64", "--ffn-hidden-size", "128",
        "--seq-length", "32", "--q-lora-rank", "32", "--kv-lora-rank", "32", "--qk-head-dim", "16",
        "--qk-pos-emb-head-dim", "8", "--v-head-dim", "16", "--moe-ffn-hidden-size", "32",
        "--moe-shared-expert-intermediate-size", "32", "--device", "cpu", "--no-progress", "--mock-data",
        "--vocab-size", "1000", "--micro-batch-size", "2", "--global-batch-size", "8", "--lr", "1e-2",
        "--lr-warmup-iters", "1", "--eval-interval", "100", "--eval-iters", "2", "--train-iters", "5"]
ALL_MOE = ["--moe-first-dense-layers", "0"]


def _run(tmp_path, name, nproc, *flags, env=None):
    m = tmp_path / f"{name}.jsonl"
    torchrun(nproc, [*ARGS, *flags, "--metrics-file", str(m)], env=env)
    return m


# every layout once, split between the optimizers (each job is 4 processes on 2 cores)
LAYOUTS = {"ep2": ["--expert-model-parallel-size", "2"],
           "tp2ep2-allgather": ["--tensor-model-parallel-size", "2", "--expert-model-parallel-size", "2",
                                "--moe-token-dispatcher-type", "allgather"],
           "tp2ep2-alltoall": ["--tensor-model-parallel-size", "2", "--expert-model-parallel-size", "2"],
           # stage 0 holds the dense layer, stage 1 the MoE layer (the expert grad norm is collective anyway)
           "pp2ep2": ["--pipeline-model-parallel-size", "2", "--expert-model-parallel-size", "2"]}


@pytest.mark.parametrize("optimizer,balance,names", [("adam", "aux_loss", ["tp2ep2-alltoall", "pp2ep2"]),
                                                     ("muon-nsgd", "seq_aux_loss", ["ep2", "tp2ep2-allgather"])],
                         ids=["adam", "muon-nsgd"])
def test_expert_and_tensor_parallel_layouts_give_the_same_losses(tmp_path, optimizer, balance, names):
    """EP1/TP1 (DP4) vs TP2xEP2 (alltoall dispatcher) and PP2xEP2 with AdamW, vs EP2 and TP2xEP2 (allgather
    dispatcher) with Muon-NSGD; 2 layers (dense + MoE), clipping on so the expert-parallel grad norm matters;
    expert-bias balancing on."""
    common = ["--optimizer", optimizer, "--moe-router-load-balancing-type", balance, "--moe-aux-loss-coeff", "0.01",
              "--clip-grad", "0.5"]
    ref = _run(tmp_path, "ref", 4, *common)
    layouts = {name: LAYOUTS[name] for name in names}
    for name, flags in layouts.items():
        got = _run(tmp_path, name, 4, *common, *flags)
        assert_close(losses(got), losses(ref), rel=1e-5)
    print(f"{optimizer}: losses {[round(v, 5) for v in losses(ref).values()]} in every layout")
    recs = [r for r in read_metrics(ref) if "lm_loss" in r]
    # per-layer load balance at every log interval: layer 1 is the MoE layer (layer 0 is dense)
    assert all(set(r["expert_load"]) == {"1"} and 1.0 <= r["expert_load"]["1"] <= 8 / 2 for r in recs)


def test_moe_growth_copy_zeroL_preserves_function_online_and_offline(tmp_path):
    """1 -> 3 MoE layers, copy_zeroL: online from EP1 (DP4) into TP2xEP2 the held-out loss is unchanged;
    offline (tools/expand_checkpoint.py) the grown model's logits at TP2xEP2 equal the source's."""
    grow = [*ALL_MOE, "--num-layers", "1", "--grow-at-iter", "3", "--grow-to-layers", "3", "--grow-init", "copy_zeroL"]
    m = _run(tmp_path, "online", 4, *grow, "--grow-expert-model-parallel-size", "2",
             "--grow-tensor-model-parallel-size", "2", env={"MEGATRON_GROW_GROW_EVAL_AFTER": "1"})  # (re-measure it)
    ev = [r for r in read_metrics(m) if r.get("event") == "grow"][0]
    assert ev["from_layout"] == {"tp": 1, "pp": 1, "dp": 4, "ep": 1}
    assert ev["to_layout"] == {"tp": 2, "pp": 1, "dp": 2, "ep": 2} and ev["loss_after_measured"]
    assert abs(ev["loss_before"] - ev["loss_after"]) <= 1e-5 * ev["loss_before"]
    assert [r["num_layers"] for r in read_metrics(m) if "lm_loss" in r] == [1] * 3 + [3] * 2

    src, grown = tmp_path / "src", tmp_path / "grown"
    torchrun(2, [*ARGS, *ALL_MOE, "--num-layers", "1", "--train-iters", "3", "--expert-model-parallel-size", "2",
                 "--save", str(src)])
    run([sys.executable, "tools/expand_checkpoint.py", "--load", str(src), "--save", str(grown),
         "--target-num-layers", "3", "--init", "copy_zeroL"])
    ref, got = tmp_path / "ref.pt", tmp_path / "got.pt"
    torchrun(1, ["--out", str(ref), *ARGS, *ALL_MOE, "--num-layers", "1", "--load", str(src)],
             module="tools.dump_logits")
    torchrun(4, ["--out", str(got), *ARGS, *ALL_MOE, "--num-layers", "3", "--load", str(grown),
                 "--tensor-model-parallel-size", "2", "--expert-model-parallel-size", "2"], module="tools.dump_logits")
    a, b = torch.load(ref), torch.load(got)
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-5), (a - b).abs().max()


def test_in_memory_moe_growth_equals_checkpoint_path(tmp_path):
    """1 -> 3 MoE layers on one process, copy init and copied moments: growth in memory gives bit for bit the
    metrics of growth through a checkpoint (experts, router, expert bias and their moments copied alike)."""
    mem, _ = grow_both_ways(tmp_path, 1, [*ARGS, *ALL_MOE, "--num-layers", "1", "--grow-at-iter", "3",
                                          "--grow-to-layers", "3", "--grow-init", "copy", "--grow-optimizer-state",
                                          "copy"])
    assert mem["loss_after_measured"] and mem["loss_after"] != mem["loss_before"]


def test_copy_init_puts_the_source_experts_in_every_new_layer(world, tmp_path):
    """copy: every expert, the router, its expert bias and the shared expert of each new layer equal
    the source layer's; --optimizer-state copy moves their Adam moments too."""
    src, grown = tmp_path / "src", tmp_path / "grown"
    torchrun(2, [*ARGS, *ALL_MOE, "--num-layers", "1", "--train-iters", "3", "--expert-model-parallel-size", "2",
                 "--save", str(src)])
    run([sys.executable, "tools/expand_checkpoint.py", "--load", str(src), "--save", str(grown),
         "--target-num-layers", "3", "--init", "copy", "--optimizer-state", "copy"])
    src_p, src_m, src_state = load_state([*ARGS, *ALL_MOE], src, 1)
    bias = src_state.module.decoder.layers[0].mlp.router.expert_bias.clone()
    new_p, new_m, new_state = load_state([*ARGS, *ALL_MOE], grown, 3)
    experts = [n for n in new_p if ".local_experts." in n]
    assert len(experts) == 3 * 8 * 2  # 3 layers x 8 experts x (fc1, fc2)
    for name, p in new_p.items():
        sname = name.replace(f"layers.{name.split('.')[2]}.", "layers.0.") if ".layers." in name else name
        assert torch.equal(p, src_p[sname]), name
        assert torch.equal(new_m[name], src_m[sname]), name
    assert bias.abs().sum() > 0  # aux-loss-free balancing moved the bias during training
    for layer in new_state.module.decoder.layers:
        assert torch.equal(layer.mlp.router.expert_bias, bias)
    e0, e1 = (src_p[f"decoder.layers.0.mlp.experts.local_experts.{i}.linear_fc1.weight"] for i in (0, 1))
    assert not torch.equal(e0, e1)  # the experts are distinct, each copied to its own place


def test_resume_is_exact_with_moe(tmp_path):
    flags = ["--expert-model-parallel-size", "2", "--optimizer", "muon-nsgd", "--train-iters", "6"]
    ck = tmp_path / "ck"
    full = _run(tmp_path, "full", 2, *flags, "--save", str(ck), "--save-interval", "3")
    res = _run(tmp_path, "res", 2, *flags, "--load", str(ck), "--ckpt-step", "3")  # from the middle of that run
    assert losses(res) == {k: v for k, v in losses(full).items() if k > 3}


def test_layer_kinds_in_growth_plans():
    """The first --moe-first-dense-layers layers are dense at every depth: a trained layer keeps its
    kind (else the plan is refused, naming the flag); a new layer copied across kinds takes only
    the source's attention and norms."""
    from conftest import cfg_for

    cfg = cfg_for("deepseek-v3", num_layers=1)  # tiny: the first layer is dense
    kinds = growth_kinds(cfg, 1, 4)
    assert kinds == (["dense"], ["dense", "moe", "moe", "moe"])
    bad = problems(1, 4, "bottom", "copy", kinds=kinds)
    assert len(bad) == 1 and "--grow-placement bottom" in bad[0] and "--moe-first-dense-layers" in bad[0]
    plan = make_plan(1, 4, "top", "copy", kinds)
    assert [(t.kind, t.source, t.mlp_from_source) for t in plan] == [
        ("dense", 0, True), ("moe", 0, False), ("moe", 0, False), ("moe", 0, False)]
    assert growth_kinds(cfg_for("llama3"), 1, 4) is None
