"""Finalising a run's config: defaults for the world size and device, then every component's
problems joined into one ConfigError, each naming its flag (model, layout, data, device, checkpoints,
optimizer, muP, growth: each checks its own flags, beside its code); --grow-at auto's tau applied, and
the grown config (each step of --grow-schedule) checked again with its flags named. Megatron-LM's
launch-script flags that no component owns (--fp16, FP8, --context-parallel-size, --ckpt-format,
--attention-backend, --step-batch-size-schedule) are honoured or refused here (launch_flag_problems), and
--train-iters is filled (100, or --train-samples // --global-batch-size). The one module that imports
every component's checks; config.py, below it, imports none."""

from __future__ import annotations

import functools
import os

from megatron_grow import checkpointing, config, data, models, monitor, mup, optim, platform
from megatron_grow.config import ConfigError, RunConfig
from megatron_grow.growth import plan
from megatron_grow.growth.tau import auto_tau


def finalize(cfg: RunConfig, world_size: int, device: str, te_available: bool = False) -> RunConfig:
    """Resolve presets and defaults for ``world_size`` ranks, then validate (raises ConfigError)."""
    cfg.world_size = world_size
    if cfg.load and cfg.save and os.path.abspath(cfg.load) == os.path.abspath(cfg.save) and not \
            checkpointing._holds_checkpoint(cfg.load):
        cfg.load = None  # Megatron-LM's `--save DIR --load DIR` before DIR's first checkpoint: start afresh
    problems = models.apply_preset(cfg)
    if cfg.bf16 is None:
        cfg.bf16 = device == "cuda"
    muon = cfg.optimizer == "muon-nsgd"
    if cfg.weight_decay is None:
        cfg.weight_decay = 0.01 if muon else 0.1
    if cfg.clip_grad is None:
        cfg.clip_grad = 0.0 if muon else 1.0
    if cfg.transformer_impl == "auto":
        cfg.transformer_impl = "transformer_engine" if device == "cuda" and te_available and \
            cfg.attention_backend != "local" else "local"  # (--attention-backend local: megatron-core's layers)
    if not problems:
        if cfg.global_batch_size is None and world_size % (
                cfg.tensor_model_parallel_size * cfg.pipeline_model_parallel_size) == 0:
            cfg.global_batch_size = cfg.micro_batch_size * max(cfg.data_parallel_size, 1)
        problems = optim.sample_schedule_problems(cfg)  # (before --train-iters is filled: was it given?)
        if cfg.train_iters is None:
            cfg.train_iters = max(cfg.train_samples // (cfg.global_batch_size or 1), 1) if cfg.train_samples else 100
        problems += validate(cfg, device, te_available)
        if config.growth_requested(cfg) and not config.first_tier_problems(cfg) and cfg.num_layers >= 0:
            if cfg.grow_schedule:
                tau_problems = plan.grow_schedule_problems(cfg)
                planned = {} if tau_problems else config.schedule_step(cfg)  # the first step's growth fields
            else:
                tau_problems, planned = auto_tau(cfg)
            for k, v in planned.items():
                setattr(cfg, k, v)
            problems += tau_problems or growth_problems(cfg, device, te_available, known=problems)
    if problems:
        raise ConfigError(problems)
    return cfg


def validate(cfg: RunConfig, device: str, te_available: bool = False) -> list[str]:
    """Every inconsistency in ``cfg``, each as a message naming the flag and what would work. Pure:
    reads ``cfg`` and the files it names, changes nothing."""
    P = config.first_tier_problems(cfg)
    if P:  # the other checks divide by these; the value ranges do not depend on them
        return P + config.range_problems(cfg)
    return (models.model_problems(cfg) + models.layout_problems(cfg) + config.batch_problems(cfg)
            + data.data_problems(cfg) + platform.device_problems(cfg, device, te_available)
            + checkpointing.checkpoint_problems(cfg) + config.schedule_problems(cfg)
            + optim.optimizer_problems(cfg, device) + mup.mup_problems(cfg) + config.range_problems(cfg)
            + plan.new_layer_lr_problems(cfg) + models.memory_problems(cfg)
            + monitor.monitor_problems(cfg, device) + launch_flag_problems(cfg, device, te_available))


def growth_problems(cfg: RunConfig, device: str, te_available: bool = False, known=()) -> list[str]:
    """Problems of the growth flags and of the grown model's layout, leaving out those in ``known``
    (the un-grown config's, which the grown one repeats); with --grow-schedule, of each step in turn."""
    if not cfg.grow_schedule:
        return _one_growth_problems(cfg, device, te_available, known)
    P = []
    names = {"--grow-tensor-model-parallel-size ": ":tp", "--grow-pipeline-model-parallel-size ": ":pp",
             "--grow-expert-model-parallel-size ": ":ep", " (--grow-at-iter / --grow-at-fraction)": ""}
    while not P and cfg.num_layers < cfg.grow_to_layers:
        P = [f"--grow-schedule step {cfg.grow_to_layers}@{cfg.grow_at_iter}: "
             + functools.reduce(lambda m, kv: m.replace(*kv), names.items(), p)
             for p in _one_growth_problems(cfg, device, te_available, known)]
        cfg = config.grown_config(cfg)
    return P


def _one_growth_problems(cfg: RunConfig, device: str, te_available: bool, known) -> list[str]:
    P = []
    tau = config.grow_iteration(cfg)
    if cfg.grow_to_layers is None:
        return ["--grow-at-iter / --grow-at-fraction need --grow-to-layers L (the target depth)"]
    if tau is None:
        return ["--grow-to-layers needs --grow-at-iter N or --grow-at-fraction f (when to grow)"]
    if cfg.grow_at_iter is not None and cfg.grow_at_fraction is not None:
        P.append("give one of --grow-at-iter and --grow-at-fraction, not both")
    if not 0 < tau < cfg.train_iters:
        P.append(f"growth at iteration {tau} (--grow-at-iter / --grow-at-fraction) must lie inside "
                 f"1..{cfg.train_iters - 1} (--train-iters {cfg.train_iters})")
    P += plan.problems(cfg.num_layers, cfg.grow_to_layers, cfg.grow_placement, cfg.grow_init,
                       kinds=models.growth_kinds(cfg, cfg.num_layers, cfg.grow_to_layers))
    if not P:
        P += [f"after growth: {p}".replace("--tensor-model-parallel-size", "--grow-tensor-model-parallel-size")
              .replace("--pipeline-model-parallel-size", "--grow-pipeline-model-parallel-size")
              .replace("--expert-model-parallel-size", "--grow-expert-model-parallel-size")
              .replace("--num-layers", "--grow-to-layers").replace("--pipeline-layers", "--grow-pipeline-layers")
              for p in validate(config.grown_config(cfg), device, te_available)
              if "already holds a checkpoint" not in p and p not in known]
    return P


FP8_SCALING = ("fp8_amax_history_len", "fp8_amax_compute_algo")  # (--fp8-format's options)


def launch_flag_problems(cfg: RunConfig, device: str, te_available: bool = False) -> list[str]:
    """Megatron-LM's launch-script flags that select what no component here does (or does only with
    Transformer Engine on CUDA): each refused with the reason and what would work."""
    P = []
    te = device == "cuda" and te_available and cfg.transformer_impl == "transformer_engine"
    where = ("this run has no GPU (--device cpu)" if device != "cuda" else
             "this run has no Transformer Engine" if not te_available else "this run has --transformer-impl local")
    if cfg.fp16:
        P.append("--fp16: fp16 training needs loss scaling (Megatron-LM's dynamic grad scaler) to keep small "
                 "gradients from underflowing, which this trainer does not have; use --bf16 (same memory, no loss "
                 "scaling needed)")
    fp8 = " ".join(f"--{k.replace('_', '-')} {getattr(cfg, k)}" for k in FP8_SCALING
                   if getattr(cfg, k) != RunConfig.__dataclass_fields__[k].default)
    if cfg.fp8_format is None and fp8:
        P.append(f"{fp8}: these set FP8 scaling, which only --fp8-format turns on")
    elif cfg.fp8_format is not None and not te:
        P.append(f"--fp8-format {cfg.fp8_format}{' (with ' + fp8 + ')' if fp8 else ''}: FP8 runs in Transformer "
                 f"Engine's layers on an FP8-capable CUDA GPU (Hopper or newer); {where}. Drop the fp8 flags "
                 f"(--bf16 is the precision that runs here)")
    elif cfg.fp8_format is not None and not cfg.bf16:
        P.append(f"--fp8-format {cfg.fp8_format}: FP8 layers keep bf16 weights here; add --bf16")
    if cfg.cross_entropy_loss_fusion and not cfg.bf16:
        P.append("--cross-entropy-loss-fusion: megatron-core's fused cross entropy hands back its logits gradient in "
                 "bf16 (it casts it: made for bf16 runs), which would round this fp32 run's gradients to bf16 "
                 "precision; add --bf16 or drop the flag")
    if cfg.fp8_param_gather:
        P.append("--fp8-param-gather: FP8 parameters all-gathered by megatron-core's distributed optimizer; this "
                 "trainer's optimizer (--use-distributed-optimizer included) keeps fp32 master pieces and broadcasts "
                 "bf16/fp32 weights, never FP8 ones: drop the flag")
    if cfg.attention_backend in ("flash", "fused") and not te:
        P.append(f"--attention-backend {cfg.attention_backend}: selects a Transformer Engine attention kernel, "
                 f"which needs --transformer-impl transformer_engine on CUDA; {where}. Use auto, local or unfused "
                 f"(megatron-core's local layers, attention by torch's scaled_dot_product_attention)")
    elif cfg.attention_backend == "local" and cfg.transformer_impl == "transformer_engine":
        P.append("--attention-backend local means megatron-core's local layers: drop --transformer-impl "
                 "transformer_engine (or use --attention-backend auto)")
    if cfg.context_parallel_size != 1:
        P.append(f"--context-parallel-size {cfg.context_parallel_size}: context parallelism is not implemented here "
                 "(it splits every sequence over CP ranks: Transformer Engine's ring attention, the data split per CP "
                 "rank and CP-aware process groups, loss and DDP; the local attention has none of it); use 1, and "
                 "--tensor-model-parallel-size with --sequence-parallel to spread long sequences")
    if cfg.ckpt_format != "torch_dist":
        P.append(f"--ckpt-format {cfg.ckpt_format}: checkpoints here are always torch_dist (megatron-core "
                 f"dist_checkpointing, which growth and a resume in another TP/PP/EP/DP layout reshard); use "
                 f"--ckpt-format torch_dist")
    if cfg.step_batch_size_schedule is not None:
        P.append(f"--step-batch-size-schedule {cfg.step_batch_size_schedule!r}: a batch-size ramp is not implemented "
                 f"here (the global batch is constant: the data position, the compute ledger, growth and the "
                 f"sample-based LR schedule assume it; Megatron-LM itself refuses the flag beside "
                 f"--global-batch-size); use --global-batch-size")
    return P
