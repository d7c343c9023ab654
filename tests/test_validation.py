"""Every inconsistent configuration fails before any work, with one message naming each flag."""

import pytest

from conftest import run
from megatron_grow import config
from megatron_grow.finalize import finalize


def problems(argv, world=1, device="cpu"):
    cfg = config.parse_args(argv)
    with pytest.raises(config.ConfigError) as e:
        finalize(cfg, world, device)
    return e.value.problems


BASE = ["--mock-data"]


@pytest.mark.parametrize("argv,world,needle", [
    (["--num-attention-heads", "6", "--tensor-model-parallel-size", "4", "--num-query-groups", "6"], 4,
     "--num-attention-heads 6 is not divisible by --tensor-model-parallel-size 4"),
    (["--num-query-groups", "2", "--tensor-model-parallel-size", "4"], 4, "--num-query-groups 2 is not divisible"),
    (["--num-layers", "3", "--pipeline-model-parallel-size", "2"], 2, "--num-layers 3 does not split evenly"),
    (["--num-layers", "0", "--pipeline-model-parallel-size", "2"], 2, "--num-layers 0 has no layers"),
    (["--num-layers", "4", "--pipeline-model-parallel-size", "2", "--decoder-first-pipeline-num-layers", "5"], 2,
     "--decoder-first-pipeline-num-layers 5"),
    (["--global-batch-size", "6", "--micro-batch-size", "4"], 1, "--global-batch-size 6 is not divisible"),
    (["--global-batch-size", "8", "--micro-batch-size", "2"], 3,
     "--global-batch-size 8 is not divisible by --micro-batch-size 2 x data-parallel size 3"),
    (["--tensor-model-parallel-size", "2"], 3, "world size 3 is not divisible"),
    (["--preset", "nope"], 1, "--preset 'nope' is not a llama3 preset"),
    (["--hidden-size", "130"], 1, "--hidden-size 130 is not divisible by --num-attention-heads 4"),
    (["--seq-length", "4096", "--max-position-embeddings", "128"], 1, "--seq-length 4096 exceeds"),
    (["--save-interval", "5"], 1, "--save-interval needs --save"),
    (["--load", "/nonexistent/ckpt"], 1, "--load /nonexistent/ckpt: directory not found"),
    (["--split", "1,2"], 1, "--split '1,2'"),
    (["--micro-batch-size", "0"], 1, "--micro-batch-size must be >= 1"),
    (["--num-experts", "8"], 1, "--num-experts is a deepseek-v3 flag; --model llama3 has no experts"),
    (["--model", "deepseek-v3", "--expert-model-parallel-size", "3"], 3, "--num-experts 8 is not divisible by "
     "--expert-model-parallel-size 3"),
    (["--model", "deepseek-v3", "--expert-model-parallel-size", "2", "--tensor-model-parallel-size", "2",
      "--micro-batch-size", "1"], 2, "world size 2 is not divisible by --tensor-model-parallel-size 2 x "
     "--pipeline-model-parallel-size 1 x --expert-model-parallel-size 2"),
    (["--model", "deepseek-v3", "--moe-router-topk", "9"], 1, "--moe-router-topk 9 must lie in 1..--num-experts 8"),
    (["--model", "deepseek-v3", "--moe-router-score-function", "softmax"], 1, "--moe-router-enable-expert-bias needs"),
    (["--model", "deepseek-v3", "--moe-router-num-groups", "3"], 1,
     "--moe-router-num-groups 3 must divide --num-experts 8"),
    (["--model", "deepseek-v3", "--moe-router-group-topk", "4"], 1,
     "--moe-router-group-topk 4 must lie in 1..--moe-router-num-groups 2, divide --moe-router-topk 2"),
    (["--model", "deepseek-v3", "--moe-router-topk-scaling-factor", "0"], 1,
     "--moe-router-topk-scaling-factor must be > 0"),
    (["--model", "deepseek-v3", "--num-layers", "1", "--grow-to-layers", "4", "--grow-at-iter", "5",
      "--train-iters", "10"], 1, "--grow-placement bottom moves trained source layer 0 (dense)"),
    (["--num-layers", "4", "--pipeline-model-parallel-size", "2", "--pipeline-layers", "1,2"], 2,
     "--pipeline-layers 1,2 must give 2 stage(s)"),
    (["--num-layers", "1", "--grow-to-layers", "4", "--grow-at-iter", "5",
      "--grow-pipeline-model-parallel-size", "2", "--grow-pipeline-layers", "4,0"], 2,
     "after growth: --grow-pipeline-layers 4,0"),
    (["--num-layers", "1", "--grow-to-layers", "4"], 1, "--grow-to-layers needs --grow-at-iter"),
    (["--train-iters", "4", "--lr-warmup-iters", "4"], 1, "must be shorter than --train-iters 4"),
    (["--train-iters", "10", "--lr-warmup-iters", "5", "--lr-wsd-decay-iters", "6"], 1, "warmup 5 + decay 6"),
    (["--grow-new-layer-lr-mult", "2"], 1, "act on the layers a growth inside this run adds"),
    (["--num-layers", "1", "--grow-to-layers", "4", "--grow-at-iter", "5", "--grow-new-layer-lr-mult", "-1"], 1,
     "--grow-new-layer-lr-mult -1.0 must be a finite number >= 0"),
    (["--num-layers", "1", "--grow-to-layers", "4", "--grow-at-iter", "5", "--grow-new-layer-lr-mult", "0"], 1,
     "would freeze the new layers"),
    (["--num-layers", "1", "--grow-to-layers", "4", "--grow-at-iter", "5", "--grow-new-layer-lr-iters", "-3"], 1,
     "--grow-new-layer-lr-iters -3 must be >= 0"),
    (["--num-layers", "1", "--grow-schedule", "4@5,2@8"], 1, "each step must grow deeper than the one before"),
    (["--num-layers", "1", "--grow-schedule", "2@5,4@5"], 1, "at a later iteration"),
    (["--num-layers", "1", "--grow-schedule", "4at5"], 1, "cannot read '4at5'; write LAYERS@ITER[:tpN]"),
    (["--num-layers", "1", "--grow-schedule", "2@5", "--grow-to-layers", "4"], 1, "drop --grow-to-layers"),
    (["--num-layers", "1", "--grow-schedule", "2@5,4@8:tp4", "--train-iters", "10"], 2,
     "--grow-schedule step 4@8: after growth: world size 2 is not divisible by :tp4"),
    (["--num-layers", "1", "--grow-schedule", "2@5,4@80", "--train-iters", "10"], 1,
     "--grow-schedule step 4@80: growth at iteration 80 must lie inside 1..9"),
    (["--recompute-granularity", "full"], 1, "--recompute-granularity full needs --recompute-method"),
    (["--recompute-granularity", "selective", "--recompute-method", "uniform"], 1,
     "--recompute-method / --recompute-num-layers apply to --recompute-granularity full only"),
    (["--recompute-granularity", "selective", "--recompute-modules", "core_attn,nope"], 1,
     "--recompute-modules 'core_attn,nope': choose comma-separated from"),
    (["--recompute-granularity", "selective", "--recompute-modules", "moe"], 1, "are deepseek-v3's (MoE, MLA)"),
    (["--recompute-granularity", "selective", "--recompute-modules", "layernorm"], 1,
     "--recompute-modules layernorm, mla_up_proj need Transformer Engine"),
    (["--overlap-param-gather"], 1, "--overlap-param-gather needs megatron-core's distributed optimizer"),
    (["--sequence-parallel", "--tensor-model-parallel-size", "2", "--seq-length", "33"], 2,
     "--seq-length 33 is not divisible by --tensor-model-parallel-size 2 (sequence parallelism splits"),
])
def test_each_problem_is_named(argv, world, needle):
    found = problems(BASE + argv, world)
    assert any(needle in p for p in found), found


def test_missing_data_path_names_the_options():
    found = problems([])
    assert any("--data-path PREFIX" in p and "--mock-data" in p for p in found), found


def test_data_path_without_files(tmp_path):
    found = problems(["--data-path", str(tmp_path / "corpus"), "--tokenizer-model", str(tmp_path / "t.model")])
    assert any("corpus.bin not found" in p for p in found)
    assert any("corpus.idx not found" in p for p in found)
    assert any("--tokenizer-model" in p and "not found" in p for p in found)


def test_one_data_source_and_a_vocabulary_that_holds_the_tokenizer():
    """--mock-data beside data files is refused (Megatron-LM's rule); a --vocab-size given is kept when it holds
    the tokenizer (an embedding table larger than the tokenizer, as DeepSeek-V3's) and refused when smaller."""
    from megatron_grow.data import resolve_data_flags

    found = problems(BASE + ["--data-path", "web", "--valid-data-path", "v"])
    assert any("--mock-data with --data-path / --valid-data-path: give one data source" in p for p in found), found
    cfg = config.parse_args(["--data-path", "demo", "--vocab-size", "100"])
    resolve_data_flags(cfg)
    with pytest.raises(config.ConfigError) as e:
        finalize(cfg, 1, "cpu")
    assert any("--vocab-size 100 is smaller than the tokenizer's 4096 tokens" in p for p in e.value.problems)
    cfg = config.parse_args(["--data-path", "demo", "--vocab-size", "5000"])
    resolve_data_flags(cfg)
    assert finalize(cfg, 1, "cpu").vocab_size == 5000


def test_all_problems_reported_together():
    found = problems(BASE + ["--num-attention-heads", "6", "--num-query-groups", "6",
                             "--tensor-model-parallel-size", "4", "--preset", "tiny",
                             "--global-batch-size", "3", "--save-interval", "2"], world=4)
    assert len(found) >= 3, found


def test_growth_problems_come_with_the_others():
    """A bad --lr does not hide a growth step outside the run, and the grown model's problems that
    the un-grown one shares are said once."""
    found = problems(BASE + ["--lr", "-1", "--num-layers", "1", "--grow-to-layers", "4", "--grow-at-iter", "50",
                             "--train-iters", "20", "--num-attention-heads", "6", "--num-query-groups", "6",
                             "--tensor-model-parallel-size", "4"], world=4)
    assert any("--lr -1.0 must be" in p for p in found), found
    assert any("growth at iteration 50" in p for p in found), found
    found = problems(BASE + ["--lr", "-1", "--num-layers", "1", "--grow-to-layers", "3", "--grow-at-iter", "10",
                             "--train-iters", "20", "--num-attention-heads", "6", "--num-query-groups", "6",
                             "--tensor-model-parallel-size", "4", "--grow-pipeline-model-parallel-size", "2"], world=4)
    assert sum("--num-attention-heads 6 is not divisible" in p for p in found) == 1, found
    assert any("after growth" in p and "--grow-pipeline-model-parallel-size 2" in p for p in found), found


def test_numeric_ranges_all_reported():
    """Values that would crash after model build or train silently wrong, all in one message."""
    found = problems(BASE + ["--lr", "nan", "--adam-beta1", "1.5", "--init-method-std", "-1", "--hidden-dropout", "2",
                             "--vocab-size", "0", "--save", "/tmp/x", "--save-interval", "0", "--exit-interval", "-2",
                             "--clip-grad", "-1", "--max-skipped-steps", "0", "--loss-spike-factor", "0.5",
                             "--micro-batch-size", "0", "--weight-decay", "inf"])
    for needle in ("--lr nan must be a finite number > 0", "--adam-beta1 1.5 must be in [0, 1)",
                   "--init-method-std -1.0 must be > 0", "--hidden-dropout 2.0 must be in [0, 1)",
                   "--vocab-size must be >= 1", "--save-interval must be >= 1", "--exit-interval must be >= 1",
                   "--clip-grad -1.0 must be >= 0", "--max-skipped-steps must be >= 1", "--loss-spike-factor 0.5",
                   "--micro-batch-size must be >= 1", "--weight-decay inf must be a finite number >= 0"):
        assert any(needle in p for p in found), (needle, found)
    assert any("--min-lr 0.5 must be in [0, --lr 0.1]" in p
               for p in problems(BASE + ["--lr", "0.1", "--min-lr", "0.5"]))


def test_save_must_be_creatable(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("x")
    assert any(f"--save {f} is a file" in p for p in problems(BASE + ["--save", str(f)]))
    assert any("cannot be created" in p and "is a file" in p for p in problems(BASE + ["--save", str(f / "ck")]))


def test_valid_config_passes():
    cfg = finalize(config.parse_args(BASE + ["--tensor-model-parallel-size", "2",
                                             "--pipeline-model-parallel-size", "2"]), 8, "cpu")
    assert cfg.data_parallel_size == 2 and cfg.global_batch_size == 8 and cfg.num_layers == 2


@pytest.mark.parametrize("model,argv", [  # Megatron-LM's architecture flags at each family's value
    ("llama3", ["--use-mcore-models", "--swiglu", "--normalization", "RMSNorm", "--position-embedding-type", "rope",
                "--group-query-attention", "--num-query-groups", "2", "--disable-bias-linear", "--rotary-percent",
                "0.5", "--rotary-base", "1000000", "--norm-epsilon", "1e-6", "--use-rope-scaling",
                "--rope-scaling-factor", "32", "--apply-layernorm-1p"]),
    ("gpt2", ["--no-swiglu", "--normalization", "LayerNorm", "--position-embedding-type", "learned_absolute",
              "--no-disable-bias-linear", "--group-query-attention", "--num-query-groups", "2",
              "--apply-layernorm-1p"]),
    ("deepseek-v3", ["--swiglu", "--normalization", "RMSNorm", "--position-embedding-type", "rope",
                     "--disable-bias-linear", "--no-group-query-attention", "--rotary-base", "50000"]),
])
def test_architecture_flags_at_the_familys_value(model, argv):
    cfg = finalize(config.parse_args(BASE + ["--model", model, *argv]), 1, "cpu")
    assert cfg.num_query_groups == (2 if model != "deepseek-v3" else cfg.num_attention_heads)
    # --no-group-query-attention is multi-head attention, as in Megatron-LM (a query group per head)
    assert finalize(config.parse_args(BASE + ["--no-group-query-attention"]), 1, "cpu").num_query_groups == 4


@pytest.mark.parametrize("argv,needle", [  # ... and refused at another, naming the family that has it
    (["--normalization", "LayerNorm"], "--normalization LayerNorm: --model llama3 uses RMSNorm; gpt2 has LayerNorm "
     "(pass --model gpt2)"),
    (["--model", "gpt2", "--normalization", "RMSNorm"], "--normalization RMSNorm: --model gpt2 uses LayerNorm; "
     "llama3, deepseek-v3 have RMSNorm (pass --model llama3)"),
    (["--model", "gpt2", "--swiglu"], "--swiglu: --model gpt2 uses a GeLU MLP; llama3, deepseek-v3 have a SwiGLU MLP"),
    (["--no-swiglu"], "--no-swiglu: --model llama3 uses a SwiGLU MLP; gpt2 has a GeLU MLP (pass --model gpt2)"),
    (["--model", "deepseek-v3", "--position-embedding-type", "learned_absolute"],
     "--position-embedding-type learned_absolute: --model deepseek-v3 uses rope positions; gpt2 has "
     "learned_absolute positions"),
    (["--position-embedding-type", "yarn"], "--position-embedding-type yarn: --model llama3 uses rope positions; no "
     "model family here has yarn positions"),
    (["--model", "gpt2", "--disable-bias-linear"], "--disable-bias-linear: --model gpt2 uses linear layers with "
     "biases; llama3, deepseek-v3 have linear layers without biases (pass --model llama3)"),
    (["--no-disable-bias-linear"], "--no-disable-bias-linear: --model llama3 uses linear layers without biases; gpt2"),
    (["--model", "deepseek-v3", "--group-query-attention"], "--group-query-attention: --model deepseek-v3 uses no "
     "grouped-query attention; llama3, gpt2 have grouped-query attention (pass --model llama3)"),
    (["--no-group-query-attention", "--num-query-groups", "2"], "--num-query-groups 2 with "
     "--no-group-query-attention"),
    (["--model", "gpt2", "--rotary-base", "10000"], "--rotary-base: --model gpt2 has learned absolute positions, "
     "no RoPE"),
    (["--model", "gpt2", "--use-rope-scaling"], "--use-rope-scaling: --model gpt2 has learned absolute positions"),
    (["--model", "deepseek-v3", "--use-rope-scaling"], "--use-rope-scaling: --model deepseek-v3's multi-latent "
     "attention has plain RoPE"),
    (["--model", "deepseek-v3", "--rotary-percent", "0.5"], "--rotary-percent 0.5: --model deepseek-v3's "
     "multi-latent attention rotates --qk-pos-emb-head-dim dimensions"),
    (["--rotary-percent", "0.3"], "--rotary-percent 0.3 rotates 9 dimensions of each head"),
    (["--rotary-percent", "1.5"], "--rotary-percent 1.5 must be in (0, 1]"),
    (["--rotary-base", "-1"], "--rotary-base -1.0 must be > 0"),
    (["--norm-epsilon", "0"], "--norm-epsilon 0.0 must be > 0"),
    (["--rope-scaling-factor", "32"], "--rope-scaling-factor 32.0 applies with --use-rope-scaling only"),
])
def test_architecture_flags_refused_at_another_value(argv, needle):
    found = problems(BASE + argv)
    assert any(needle in p for p in found), found


def test_cli_fails_before_any_work():
    """The real entry point prints every problem and exits non-zero without starting processes."""
    import sys

    res = run([sys.executable, "-m", "megatron_grow.train", "--mock-data", "--num-attention-heads", "6",
               "--num-query-groups", "6", "--tensor-model-parallel-size", "4", "--num-layers", "3",
               "--pipeline-model-parallel-size", "2"], timeout=120, check=False)
    assert res.returncode != 0
    assert res.stdout.count("invalid configuration") == 1
    assert "--num-attention-heads 6" in res.stdout and "--num-layers 3" in res.stdout
    assert "Traceback" not in res.stdout


def test_cli_reports_once_per_job_not_per_rank():
    import sys

    res = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
               "megatron_grow.train", "--mock-data", "--device", "cpu", "--lr", "-1"], timeout=120, check=False)
    assert res.returncode != 0 and res.stdout.count("--lr -1.0 must be a finite number > 0") == 1, res.stdout
    # ... and last: torchrun's failure summary ends with it as the root cause (not a traceback after it)
    tail = res.stdout.strip().splitlines()[-4:]
    assert any("--lr -1.0 must be a finite number > 0" in line for line in tail), res.stdout[-3000:]
