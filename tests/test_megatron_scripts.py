"""Megatron-LM's own launch scripts run here (issue 28, item 7). The trainer flags of Megatron-LM's
examples/llama/train_llama3_8b_h100_fp8.sh and examples/gpt3/train_gpt3_175b_distributed.sh (commit
d98e8a64dd), written out below with the scripts' values: every flag is known to the parser; shrunk to tiny
sizes, each list gives exactly the expected refusals, each naming its flag and why, in one ConfigError; without
the refused flags it trains on CPU. And what the flags that came with the scripts do: the schedule in samples
against megatron-core's scheduler counted in samples (as Megatron-LM steps it), --decoupled-lr's param groups,
--calculate-per-token-loss against the mean over the global batch's loss tokens (float64), and
--cross-entropy-loss-fusion against the unfused loss."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch

from conftest import TINY, read_metrics, run, tokenizer_files, torchrun
from megatron_grow import config
from megatron_grow.finalize import finalize

# train_llama3_8b_h100_fp8.sh: MODEL_ARGS, TRAINING_ARGS (+ DDP_ARGS), DTYPE_ARGS (DTYPE=fp8), MODEL_PARALLEL_ARGS,
# DATA_ARGS_LIST (its MOCK branch), EVAL_AND_LOGGING_ARGS, in the order torchrun gets them. The script's arrays hold
# strings like "--split '99,1,0'" expanded unquoted, so bash splits them into words and keeps the quotes: Megatron-LM
# gets the split as '99,1,0' (its parser reads the numbers out of it), and so does this list.
LLAMA3_8B_FP8 = [
    "--use-mcore-models", "--num-layers", "32", "--hidden-size", "4096", "--ffn-hidden-size", "14336",
    "--num-attention-heads", "32", "--group-query-attention", "--num-query-groups", "8", "--kv-channels", "128",
    "--seq-length", "8192", "--max-position-embeddings", "8192", "--position-embedding-type", "rope",
    "--rotary-base", "1000000", "--rotary-percent", "1.0", "--attention-dropout", "0.0", "--hidden-dropout", "0.0",
    "--swiglu", "--normalization", "RMSNorm", "--init-method-std", "0.0134", "--attention-backend", "fused",
    "--apply-layernorm-1p", "--untie-embeddings-and-output-weights", "--disable-bias-linear",
    "--micro-batch-size", "1", "--global-batch-size", "128", "--train-samples", "1953125000",
    "--lr-decay-samples", "1949218748", "--lr-warmup-samples", "3906252", "--lr", "0.00015", "--min-lr", "0.00001",
    "--decoupled-lr", "5.0e-4", "--decoupled-min-lr", "4.5e-5", "--lr-decay-style", "cosine", "--clip-grad", "1.0",
    "--weight-decay", "0.1", "--adam-beta1", "0.9", "--adam-beta2", "0.95", "--bf16", "--grad-reduce-in-bf16",
    "--cross-entropy-loss-fusion", "--calculate-per-token-loss", "--manual-gc", "--empty-unused-memory-level", "1",
    "--exit-duration-in-mins", "235", "--use-distributed-optimizer", "--overlap-grad-reduce", "--overlap-param-gather",
    "--fp8-format", "hybrid", "--fp8-amax-history-len", "1024", "--fp8-amax-compute-algo", "max", "--fp8-param-gather",
    "--tensor-model-parallel-size", "1", "--context-parallel-size", "1", "--sequence-parallel",
    "--mock-data", "--tokenizer-type", "NullTokenizer", "--vocab-size", "128256", "--data-cache-path", "CACHE",
    "--tiktoken-pattern", "v2", "--split", "'99,1,0'", "--no-create-attention-mask-in-dataloader",
    "--no-mmap-bin-files", "--num-workers", "1",
    "--log-interval", "1", "--eval-iters", "32", "--eval-interval", "100", "--save-interval", "1000",
    "--log-throughput", "--profile", "--profile-step-start", "4", "--profile-step-end", "6",
    "--ckpt-format", "torch_dist", "--distributed-timeout-minutes", "60", "--save", "CKPT", "--load", "CKPT",
    "--tensorboard-dir", "TB",
]
# train_gpt3_175b_distributed.sh: GPT_MODEL_ARGS, TRAINING_ARGS, MODEL_PARALLEL_ARGS, DATA_ARGS,
# EVAL_AND_LOGGING_ARGS. Its schedule "0:16 2.4B:320 ..." is one element of TRAINING_ARGS, but the unquoted
# ${TRAINING_ARGS[@]} splits it into words, which Megatron-LM's parser rejects (as it rejects the flag beside
# --global-batch-size): here it is one argument, as meant. The script passes no family: Megatron-LM's defaults
# (LayerNorm, learned positions, GeLU, biases) are GPT-2's architecture, which --model gpt2 names here (our
# default family is llama3).
GPT3_175B = [
    "--model", "gpt2",
    "--num-layers", "96", "--hidden-size", "12288", "--num-attention-heads", "96", "--seq-length", "2048",
    "--max-position-embeddings", "2048", "--attention-backend", "auto",
    "--micro-batch-size", "1", "--global-batch-size", "1536",
    "--step-batch-size-schedule", "0:16 2.4B:320 4.8B:624 7.2B:928 9.6B:1232 12B:1536",
    "--train-iters", "500000", "--weight-decay", "0.1", "--adam-beta1", "0.9", "--adam-beta2", "0.95",
    "--init-method-std", "0.006", "--clip-grad", "1.0", "--fp16", "--lr", "6.0e-5", "--lr-decay-style", "cosine",
    "--min-lr", "6.0e-6", "--lr-warmup-fraction", ".001", "--lr-decay-iters", "430000",
    "--tensor-model-parallel-size", "8", "--pipeline-model-parallel-size", "16",
    "--data-path", "DATA", "--vocab-file", "VOCAB", "--merge-file", "MERGES", "--split", "949,50,1",
    "--log-interval", "100", "--save-interval", "10000", "--eval-interval", "1000", "--save", "CKPT",
    "--load", "CKPT", "--eval-iters", "10", "--tensorboard-dir", "TB",
]
# tiny sizes: 2 iterations of 4 samples of 32 tokens, hidden 64
LLAMA3_TINY = {"--num-layers": "2", "--hidden-size": "64", "--ffn-hidden-size": "128", "--num-attention-heads": "4",
               "--num-query-groups": "2", "--kv-channels": "16", "--seq-length": "32",
               "--max-position-embeddings": "32",
               "--micro-batch-size": "2", "--global-batch-size": "4", "--train-samples": "8",
               "--lr-decay-samples": "7", "--lr-warmup-samples": "2", "--vocab-size": "1000", "--eval-iters": "1",
               "--eval-interval": "2", "--profile-step-start": "1", "--profile-step-end": "2"}
GPT3_TINY = {"--num-layers": "2", "--hidden-size": "64", "--num-attention-heads": "4", "--seq-length": "32",
             "--max-position-embeddings": "32", "--micro-batch-size": "2", "--global-batch-size": "4",
             "--train-iters": "2", "--lr-decay-iters": "2", "--tensor-model-parallel-size": "1",
             "--pipeline-model-parallel-size": "1", "--log-interval": "1", "--eval-interval": "2", "--eval-iters": "1"}
# what each list refuses on CPU, by flag: a word of the reason
LLAMA3_REFUSED = {"--attention-backend": "Transformer Engine", "--fp8-format": "Transformer Engine",
                  "--fp8-param-gather": "distributed optimizer", "--overlap-param-gather": "distributed optimizer",
                  "--profile": "CUDA"}  # (--profile: an Nsight Systems range; with --use-pytorch-profiler it runs)
GPT3_REFUSED = {"--fp16": "loss scaling", "--step-batch-size-schedule": "batch-size ramp"}


def shrunk(flags: list[str], sizes: dict, paths: dict) -> list[str]:
    """``flags`` with the value after each flag of ``sizes`` replaced, and the placeholder paths filled in."""
    out = list(flags)
    for i, f in enumerate(flags[:-1]):
        if f in sizes:
            out[i + 1] = sizes[f]
    return [paths.get(x, x) for x in out]


def without(flags: list[str], names) -> list[str]:
    """``flags`` without each flag of ``names`` and its value(s)."""
    out, skip = [], False
    for f in flags:
        if f.startswith("--"):
            skip = f in names
        if not skip:
            out.append(f)
    return out


def refusals(flags: list[str], device: str = "cpu", te: bool = False) -> list[str]:
    with pytest.raises(config.ConfigError) as e:
        finalize(config.parse_args(flags), 1, device, te)
    return e.value.problems


def check_refusals(problems: list[str], expected: dict) -> None:
    """One problem per expected flag, naming it first, with its reason; nothing else."""
    assert len(problems) == len(expected), "\n".join(problems)
    for flag, why in expected.items():
        mine = [p for p in problems if p.startswith(flag + " ") or p.startswith(flag + ":")]
        assert len(mine) == 1 and why in mine[0], (flag, problems)


@pytest.mark.parametrize("flags", [LLAMA3_8B_FP8, GPT3_175B], ids=["llama3_8b_fp8", "gpt3_175b"])
def test_every_flag_of_the_scripts_is_known(flags):
    known = {s for a in config.parser()._actions for s in a.option_strings}
    assert [f for f in flags if f.startswith("--") and f not in known] == []
    config.parse_args(flags)  # (values of the declared types and choices)


def test_llama3_script_refusals(tmp_path):
    paths = {"CKPT": str(tmp_path / "ckpt"), "TB": str(tmp_path / "tb"), "CACHE": str(tmp_path / "cache")}
    flags = [*shrunk(LLAMA3_8B_FP8, LLAMA3_TINY, paths), "--device", "cpu"]
    check_refusals(refusals(flags), LLAMA3_REFUSED)
    # on CUDA with Transformer Engine, flash/fused attention, FP8 and Nsight ranges are Transformer Engine's and CUDA's
    check_refusals(refusals([*flags[:-2], "--device", "cuda"], "cuda", te=True),
                   {k: v for k, v in LLAMA3_REFUSED.items() if k in ("--fp8-param-gather", "--overlap-param-gather")})


@pytest.fixture(scope="module")
def gpt2_data(tmp_path_factory):
    """GPT-2's real vocab.json / merges.txt (tools/fetch_test_tokenizers.py) and a small corpus preprocessed
    with them: {"DATA": prefix, "VOCAB": file, "MERGES": file}."""
    files = tokenizer_files()
    d = tmp_path_factory.mktemp("gpt2_data")
    words = "the of and to in is was for on that with as by at from his an were are which this be".split()
    docs = [" ".join(words[(i * 7 + j) % len(words)] for j in range(40)) for i in range(1000)]  # (>= 1 test doc)
    (d / "docs.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
    run([sys.executable, "tools/preprocess_data.py", "--input", str(d / "docs.jsonl"), "--output-prefix",
         str(d / "gpt2"), "--vocab-file", files["gpt2_vocab"], "--merge-file", files["gpt2_merges"]], timeout=120)
    return {"DATA": str(d / "gpt2"), "VOCAB": files["gpt2_vocab"], "MERGES": files["gpt2_merges"]}


def test_gpt3_script_refusals(tmp_path, gpt2_data):
    paths = {"CKPT": str(tmp_path / "ckpt"), "TB": str(tmp_path / "tb"), **gpt2_data}
    check_refusals(refusals([*shrunk(GPT3_175B, GPT3_TINY, paths), "--device", "cpu"]), GPT3_REFUSED)


def test_llama3_script_trains_on_cpu(tmp_path):
    """The shrunk flags without the refused ones: 2 iterations (bf16, sample schedule, decoupled LR, per-token
    loss, fused cross entropy, distributed optimizer, bf16 gradient reduction), saved into the --save/--load
    directory it started without; the logged LR is Megatron-LM's, counted in samples."""
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    paths = {"CKPT": str(tmp_path / "ckpt"), "TB": str(tmp_path / "tb"), "CACHE": str(tmp_path / "cache")}
    refused = [*LLAMA3_REFUSED, "--fp8-amax-history-len", "--fp8-amax-compute-algo"]
    flags = without(shrunk(LLAMA3_8B_FP8, LLAMA3_TINY, paths), refused)
    torchrun(1, [*flags, "--device", "cpu", "--no-progress", "--metrics-file", str(tmp_path / "m.jsonl")])
    recs = read_metrics(tmp_path / "m.jsonl")
    train = [r for r in recs if "lm_loss" in r]
    assert [r["iter"] for r in train] == [1, 2] and all(math.isfinite(r["lm_loss"]) for r in train)
    assert any("val_loss" in r for r in recs)
    assert (tmp_path / "ckpt" / "latest_checkpointed_iteration.txt").read_text().strip() == "2"
    # Megatron-LM: steps counted in samples, 4 per iteration, warmup 2 and decay 7 samples
    opt = torch.optim.SGD([torch.zeros(1)], lr=0.0)
    ref = OptimizerParamScheduler(opt, init_lr=0.0, max_lr=1.5e-4, min_lr=1e-5, lr_warmup_steps=2, lr_decay_steps=7,
                                  lr_decay_style="cosine", start_wd=0.1, end_wd=0.1, wd_incr_steps=8,
                                  wd_incr_style="constant")
    for r in train:
        ref.step(4)
        assert r["lr"] == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12, abs=1e-15), r["iter"]


def test_gpt3_script_trains_on_cpu(tmp_path, gpt2_data):
    """The shrunk flags without the refused ones, on data preprocessed with GPT-2's real tokenizer files."""
    paths = {"CKPT": str(tmp_path / "ckpt"), "TB": str(tmp_path / "tb"), **gpt2_data}
    flags = without(shrunk(GPT3_175B, GPT3_TINY, paths), GPT3_REFUSED)
    torchrun(1, [*flags, "--device", "cpu", "--no-progress", "--metrics-file", str(tmp_path / "m.jsonl")])
    train = [r for r in read_metrics(tmp_path / "m.jsonl") if "lm_loss" in r]
    assert [r["iter"] for r in train] == [1, 2] and all(math.isfinite(r["lm_loss"]) for r in train)
    assert train[0]["lm_loss"] == pytest.approx(math.log(50257), rel=0.1)  # (GPT-2's vocabulary, at init)


# --- what the scripts' new flags do ---------------------------------------------------------------------------
def _lrs(cfg, n: int) -> list[float]:
    """The LR our scheduler gives at iterations 0..n-1 of ``cfg``."""
    from megatron_grow.optim import build_scheduler

    opt = torch.optim.SGD([{"params": [torch.zeros(1)], "max_lr": cfg.lr, "min_lr": cfg.min_lr}], lr=0.0)
    sched, out = build_scheduler(opt, cfg), []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        sched.step(1)
    return out


def _megatron_lrs(n: int, gbs: int, **kw) -> list[float]:
    """Megatron-LM's: megatron-core's scheduler with its lengths in samples, stepped by the global batch."""
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    opt = torch.optim.SGD([torch.zeros(1)], lr=0.0)
    sched = OptimizerParamScheduler(opt, init_lr=0.0, start_wd=0.1, end_wd=0.1, wd_incr_style="constant", **kw)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        sched.step(gbs)
    return out


def _cfg(*argv):
    return finalize(config.parse_args(["--mock-data", "--device", "cpu", *argv]), 1, "cpu")


@pytest.mark.parametrize("style", ["cosine", "linear", "wsd"])
def test_schedule_in_samples_is_megatron_lms(style):
    """--train-samples with --lr-decay-samples / --lr-warmup-samples / --lr-wsd-decay-samples that the global
    batch does not divide: the LR at every iteration equals Megatron-LM's, counted in samples."""
    wsd = ["--lr-wsd-decay-samples", "150", "--lr-wsd-decay-style", "cosine"] if style == "wsd" else []
    cfg = _cfg("--global-batch-size", "16", "--micro-batch-size", "4", "--train-samples", "1000",
               "--lr-decay-samples", "900", "--lr-warmup-samples", "75", "--lr", "1e-3", "--min-lr", "1e-4",
               "--lr-decay-style", style, *wsd)
    assert cfg.train_iters == 62  # 1000 // 16, as Megatron-LM
    ref = _megatron_lrs(62, 16, max_lr=1e-3, min_lr=1e-4, lr_warmup_steps=75, lr_decay_steps=900,
                        lr_decay_style="WSD" if style == "wsd" else style, wd_incr_steps=1000,
                        **({"wsd_decay_steps": 150, "lr_wsd_decay_style": "cosine"} if wsd else {}))
    assert _lrs(cfg, 62) == pytest.approx(ref, rel=1e-12, abs=1e-18)
    # the gpt3 script's iteration schedule: warmup a fraction of --lr-decay-iters, min LR after them
    cfg = _cfg("--global-batch-size", "16", "--micro-batch-size", "4", "--train-iters", "100", "--lr-decay-iters",
               "80", "--lr-warmup-fraction", "0.05", "--lr", "1e-3", "--min-lr", "1e-4", "--lr-decay-style", "cosine")
    ref = _megatron_lrs(100, 16, max_lr=1e-3, min_lr=1e-4, lr_warmup_steps=0.05 * 80 * 16, lr_decay_steps=80 * 16,
                        lr_decay_style="cosine", wd_incr_steps=100 * 16)
    assert _lrs(cfg, 100) == pytest.approx(ref, rel=1e-12, abs=1e-18)
    assert cfg.lr_schedule()["lr_decay_iters"] == 80  # (a resume compares it)


def test_iterations_and_samples_do_not_mix():
    def problems(*argv):
        with pytest.raises(config.ConfigError) as e:
            _cfg(*argv)
        return " ".join(e.value.problems)

    assert "--train-samples counts the run in samples" in problems("--train-samples", "64", "--train-iters", "4")
    assert "not --lr-decay-iters" in problems("--train-samples", "64", "--lr-decay-iters", "4")
    assert "need --train-samples" in problems("--lr-warmup-samples", "8")
    assert "less than one global batch" in problems("--train-samples", "2", "--global-batch-size", "4")
    assert "must be shorter than the LR decay's" in problems("--lr-decay-iters", "4", "--lr-warmup-iters", "4")
    assert "--decoupled-min-lr is the LR the --decoupled-lr group" in problems("--decoupled-min-lr", "1e-5")


@pytest.fixture(scope="module")
def tiny(world):
    """Build a tiny one-layer LLaMA3 in this process from extra flags."""
    from megatron_grow import runstate

    def build(*argv):
        cfg = _cfg(*TINY, "--num-layers", "1", "--vocab-size", "256", "--train-iters", "10", *argv)
        return cfg, runstate.build_state(cfg, torch.device("cpu"))

    return build


def test_decoupled_lr_groups(tiny):
    """--decoupled-lr / --decoupled-min-lr: the input embedding and output layer (megatron-core's
    is_embedding_or_output_parameter) in groups of their own, scheduled between those bounds; the rest at --lr."""
    cfg, state = tiny("--lr", "1.5e-4", "--min-lr", "1e-5", "--decoupled-lr", "5e-4", "--decoupled-min-lr", "4.5e-5",
                      "--lr-decay-style", "cosine", "--lr-warmup-iters", "2")
    names = {id(p): n for n, p in state.module.named_parameters()}
    groups = state.optimizer.param_groups
    decoupled = {names[id(p)] for g in groups if g.get("decoupled_lr") for p in g["params"]}
    assert decoupled == {"embedding.word_embeddings.weight", "output_layer.weight"}
    assert sum(len(g["params"]) for g in groups) == len(names)
    for t in range(10):
        for g in groups:
            hi, lo = (5e-4, 4.5e-5) if g.get("decoupled_lr") else (1.5e-4, 1e-5)
            want = hi * t / 2 if t <= 2 else lo + 0.5 * (hi - lo) * (1 + math.cos(math.pi * (t - 2) / 8))
            assert g["lr"] == pytest.approx(want, rel=1e-12), (t, g.get("decoupled_lr"))
        state.scheduler.step(1)
    _, plain = tiny()
    assert not any(g.get("decoupled_lr") for g in plain.optimizer.param_groups)


def _batches(vocab: int, masks: list[torch.Tensor]):
    g = torch.Generator().manual_seed(0)
    out = []
    for m in masks:
        b, s = m.shape
        tokens = torch.randint(0, vocab, (b, s + 1), generator=g)
        out.append({"tokens": tokens[:, :-1], "labels": tokens[:, 1:], "loss_mask": m.float(),
                    "position_ids": torch.arange(s).expand(b, s)})
    return out


def test_per_token_loss(tiny):
    """--calculate-per-token-loss over two micro-batches with 10 and 64 loss tokens: the reported loss is the mean
    over all 74 (float64 reference; the mean of the micro-batch means differs) and the gradients are those of that
    mean."""
    from megatron_grow import training

    cfg, state = tiny("--calculate-per-token-loss", "--micro-batch-size", "2", "--global-batch-size", "4")
    few = torch.zeros(2, 32)
    few[0, :7], few[1, 5:8] = 1, 1
    batches = _batches(256, [few, torch.ones(2, 32)])
    state.model.zero_grad_buffer()
    total = training.reduce_losses(training.run_microbatches(cfg, state, iter(batches), "cpu", False))
    loss, grads = (total[0] / total[1]).item(), [p.main_grad.clone() for p in state.module.parameters()]
    # reference: the token losses of the same model, float64, and the gradient of their masked mean
    state.model.zero_grad_buffer()
    per_token = [state.module(b["tokens"], b["position_ids"], None, labels=b["labels"]) for b in batches]
    num = sum((t.double() * b["loss_mask"]).sum() for t, b in zip(per_token, batches, strict=True))
    den = sum(b["loss_mask"].sum() for b in batches)
    (num / den).backward()
    assert den == 74 and loss == pytest.approx((num / den).item(), rel=1e-6)
    means = [(t.double() * b["loss_mask"]).sum() / b["loss_mask"].sum() for t, b in zip(per_token, batches,
                                                                                          strict=True)]
    assert abs(sum(means).item() / 2 - loss) > 1e-3  # (what a per-micro-batch mean would have given)
    for g, p in zip(grads, state.module.parameters(), strict=True):
        assert (g - p.main_grad).norm() <= 1e-5 * p.main_grad.norm()


def test_fused_cross_entropy(world):
    """--cross-entropy-loss-fusion is megatron-core's fused vocab-parallel cross entropy: its loss equals the float64
    one, its logits gradient too, rounded to bf16 (megatron-core casts it), so it is refused without --bf16."""
    from megatron.core import parallel_state as ps
    from megatron.core.fusions.fused_cross_entropy import fused_vocab_parallel_cross_entropy

    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(32, 2, 256, generator=g), torch.randint(0, 256, (32, 2), generator=g)
    weight = torch.rand(32, 2, generator=g)
    ref = logits.double().requires_grad_()
    ref_loss = torch.nn.functional.cross_entropy(ref.view(-1, 256), labels.view(-1), reduction="none").view(32, 2)
    (ref_loss * weight).sum().backward()
    x = logits.clone().requires_grad_()
    loss = fused_vocab_parallel_cross_entropy(x, labels, ps.get_tensor_model_parallel_group())
    (loss * weight).sum().backward()
    assert torch.allclose(loss.double(), ref_loss.detach(), rtol=1e-6)
    assert x.grad.dtype == torch.float32 and torch.equal(x.grad, x.grad.bfloat16().float())
    assert torch.allclose(x.grad.double(), ref.grad, rtol=2 ** -8, atol=1e-30)
    with pytest.raises(config.ConfigError) as e:
        _cfg("--cross-entropy-loss-fusion", "--no-bf16")
    assert e.value.problems == [p for p in e.value.problems if p.startswith("--cross-entropy-loss-fusion: ")]
    assert _cfg("--cross-entropy-loss-fusion", "--bf16").cross_entropy_loss_fusion


def test_grad_reduce_in_bf16(tiny):
    """--grad-reduce-in-bf16 with --bf16: megatron DDP accumulates and reduces the gradients in bf16; in fp32 it
    changes nothing (as in Megatron-LM)."""
    for argv, dtype in [(("--bf16", "--grad-reduce-in-bf16"), torch.bfloat16), (("--bf16",), torch.float32),
                        (("--grad-reduce-in-bf16",), torch.float32)]:
        _, state = tiny(*argv)
        assert state.model.ddp_config.grad_reduce_in_fp32 == (dtype == torch.float32), argv
        assert {p.main_grad.dtype for p in state.module.parameters()} == {dtype}, argv
