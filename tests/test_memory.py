"""The memory planner's terms against the real model: parameters against the built model, saved
activations against what autograd actually saves (every tensor, once per storage)."""

import pytest
import torch

from conftest import cfg_for
from megatron_grow import memory


def saved_bytes(cfg) -> int:
    """Bytes autograd saves for backward in one forward of ``cfg``'s model (TP1/PP1, this process),
    counted once per storage, the parameters left out."""
    from megatron_grow import platform
    from megatron_grow.models import build_model

    platform.init_model_parallel(1, 1, cfg.seed)
    model = build_model(cfg, 1, 1, torch.device("cpu"))
    model.train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen = {}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            seen[st.data_ptr()] = st.nbytes()
        return t

    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, cfg.vocab_size, (cfg.micro_batch_size, cfg.seq_length), generator=g)
    pos = torch.arange(cfg.seq_length).expand_as(tokens)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(tokens, pos, None, labels=tokens)
    return sum(seen.values())


CASES = {  # family flags: MHA and GQA, RoPE and learned positions, gated and not, MLA + MoE
    "llama3-gqa": ("llama3", dict(hidden_size=256, ffn_hidden_size=768, num_attention_heads=4, num_query_groups=2)),
    "llama3-mha": ("llama3", dict(hidden_size=256, ffn_hidden_size=512, num_attention_heads=8)),
    "gpt2": ("gpt2", dict(hidden_size=256, ffn_hidden_size=1024, num_attention_heads=4)),
    "deepseek-v3": ("deepseek-v3", dict(moe_first_dense_layers=1)),
}
RECOMPUTE = {
    "none": {},
    "selective": dict(recompute_granularity="selective", recompute_modules="core_attn,mlp"),
    "full-uniform": dict(recompute_granularity="full", recompute_method="uniform", recompute_num_layers=1),
    "full-block": dict(recompute_granularity="full", recompute_method="block", recompute_num_layers=1),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("recompute", RECOMPUTE)
def test_saved_activations_match_autograd(world, case, recompute):
    """The planner's saved bytes (layers, head and fp32 logits) within 5% of autograd's, per family,
    with and without recomputation."""
    model, sizes = CASES[case]
    over = dict(RECOMPUTE[recompute])
    if model == "deepseek-v3" and over.get("recompute_modules"):
        over["recompute_modules"] = "core_attn,moe,shared_experts"
    cfg = cfg_for(model, num_layers=3, micro_batch_size=2, seq_length=128, vocab_size=1000, **sizes, **over)
    est = memory.estimate(cfg)["stages"][0]
    planned = est["activations"] + memory.head_bytes(cfg)
    got = saved_bytes(cfg)
    assert abs(planned - got) <= 0.05 * got, (planned, got)


@pytest.mark.parametrize("case", CASES)
def test_parameters_match_built_model(world, case):
    from megatron_grow.models import build_model

    model, sizes = CASES[case]
    cfg = cfg_for(model, num_layers=3, vocab_size=1000, **sizes)
    built = sum(p.numel() for p in build_model(cfg, 1, 1, torch.device("cpu")).parameters())
    assert memory.estimate(cfg)["stages"][0]["params"] == built


def test_launch_warning_names_the_layout_that_does_not_fit():
    """The trainer's launch check: silent when both models fit; one warning for the grown model when
    only the source fits, with the micro-batch that would fit and the flags to change."""
    from megatron_grow.config import grown_config

    cfg = cfg_for("llama3", num_layers=1, grow_to_layers=8, grow_at_iter=5, train_iters=10, micro_batch_size=8,
                  seq_length=128, hidden_size=256, ffn_hidden_size=768, vocab_size=1000)
    source = memory.estimate(cfg)["peak"]
    grown = memory.estimate(grown_config(cfg))["peak"]
    assert grown > 2 * source
    assert memory.launch_warnings(cfg, grown * 1.01) == []
    (warning,) = memory.launch_warnings(cfg, (source + grown) / 2)
    assert "planned memory after growth" in warning and "--grow-tensor/pipeline-model-parallel-size" in warning
    best = memory.largest_micro_batch(grown_config(cfg), (source + grown) / 2)
    assert 1 <= best < 8 and f"--micro-batch-size {best} fits" in warning
    assert memory.estimate(grown_config(cfg), best)["peak"] <= (source + grown) / 2 \
        < memory.estimate(grown_config(cfg), best + 1)["peak"]


def test_plan_memory_tool(capsys):
    """tools/plan_memory.py on the 8B example of docs/training.md: both phases, every stage, the fit verdict."""
    from tools.plan_memory import main

    assert main(["--world-size", "8", "--gpu-memory-gib", "80", "--model", "llama3", "--preset", "8b",
                 "--num-layers", "1", "--grow-to-layers", "32", "--grow-at-fraction", "0.8", "--train-iters", "100",
                 "--grow-tensor-model-parallel-size", "4", "--grow-pipeline-model-parallel-size", "2",
                 "--micro-batch-size", "1", "--global-batch-size", "512", "--use-distributed-optimizer",
                 "--recompute-granularity", "selective"]) == 0
    out = capsys.readouterr().out
    assert "after growth" in out and "stage 1: 16 layers" in out and out.count("fits in 80 GiB") == 2
    assert main(["--world-size", "8", "--gpu-memory-gib", "24", "--model", "llama3", "--preset", "8b",
                 "--micro-batch-size", "1"]) == 0
    assert "DOES NOT FIT" in capsys.readouterr().out
