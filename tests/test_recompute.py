"""Activation recomputation, sequence parallelism and overlapped gradient reduction change where
memory and time go, not what is computed: the same losses with and without each (fp32, gloo)."""

import pytest

from conftest import TINY, assert_close, losses, torchrun

ARGS = ["--mock-data", "--vocab-size", "1000", "--micro-batch-size", "2", "--global-batch-size", "8",
        "--train-iters", "5", "--eval-interval", "100", "--lr", "1e-2", "--lr-warmup-iters", "1", "--num-layers", "4"]
FULL = ["--recompute-granularity", "full", "--recompute-method"]


def run(tmp_path, nproc, args, name, banner=None):
    """The losses of a run; ``banner``: what its startup line must say the built model runs with."""
    path = tmp_path / f"{name}.jsonl"
    out = torchrun(nproc, [*TINY, *ARGS, *args, "--metrics-file", str(path)]).stdout
    assert banner is None or banner in out, out[-3000:]
    return losses(path)


@pytest.fixture(scope="module")
def gpt2_reference(tmp_path_factory):
    """GPT-2 (LayerNorm with biases, tied head): the most parameters that sequence parallelism
    leaves partial per TP rank."""
    out = run(tmp_path_factory.mktemp("ref"), 1, ["--model", "gpt2"], "ref")
    # the updates move the loss (the SP runs differ by >1e-5 when a norm's partial grads are not summed)
    assert len({round(v, 4) for v in out.values()}) == 5
    return out


def test_recomputation_gives_identical_losses(tmp_path):
    """One process: full (uniform and block) and selective recomputation replay the same forward, so
    the losses are bit-identical to a run that keeps every activation; for DeepSeekV3 selective
    recomputation of its MoE modules (full recomputation is the same megatron path for every family)."""
    for model, extra, modules in [("llama3", [], "core_attn,mlp"),
                                  ("deepseek-v3", ["--num-layers", "2", "--global-batch-size", "4"],
                                   "core_attn,moe,shared_experts")]:
        common = ["--model", model, *extra]
        ref = run(tmp_path, 1, common, f"{model}-ref")
        runs = [(["--recompute-granularity", "selective", "--recompute-modules", modules], f"recompute {modules}")]
        if model == "llama3":
            runs += [([*FULL, "uniform", "--recompute-num-layers", "2"], "recompute full (uniform 2)"),
                     ([*FULL, "block", "--recompute-num-layers", "1"], "recompute full (block 1)")]
        for flags, banner in runs:
            assert run(tmp_path, 1, [*common, *flags], f"{model}-{banner[-8:]}", banner) == ref, (model, banner)


@pytest.mark.parametrize("layout,banner", [
    (["--tensor-model-parallel-size", "2", "--sequence-parallel"], "sequence parallel"),
    (["--tensor-model-parallel-size", "2", "--pipeline-model-parallel-size", "2", "--sequence-parallel",
      *FULL, "block", "--recompute-num-layers", "1"], "sequence parallel, recompute full (block 1)"),
    # a dozen buckets, each all-reduced as its grads are ready in backward
    (["--overlap-grad-reduce", "--ddp-bucket-size", "20000"], "grad reduce overlapped (buckets of 20000 params)"),
], ids=["tp2-sp", "tp2pp2-sp-recompute", "dp2-overlap-grad-reduce"])
def test_layout_flags_match_single_process(gpt2_reference, tmp_path, layout, banner):
    nproc = 4 if "--pipeline-model-parallel-size" in layout else 2
    assert_close(run(tmp_path, nproc, ["--model", "gpt2", *layout], "got", banner), gpt2_reference, rel=1e-5)
