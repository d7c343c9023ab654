"""Finalising a run's config: defaults for the world size and device, then every component's
problems joined into one ConfigError, each naming its flag (model, layout, data, device, checkpoints,
optimizer, muP, growth: each checks its own flags, beside its code); --grow-at auto's tau applied, and
the grown config (each step of --grow-schedule) checked again with its flags named. The one module
that imports every component's checks; config.py, below it, imports none."""

from __future__ import annotations

import functools

from megatron_grow import checkpointing, config, data, models, mup, optim, platform
from megatron_grow.config import ConfigError, RunConfig
from megatron_grow.growth import plan
from megatron_grow.growth.tau import auto_tau


def finalize(cfg: RunConfig, world_size: int, device: str, te_available: bool = False) -> RunConfig:
    """Resolve presets and defaults for ``world_size`` ranks, then validate (raises ConfigError)."""
    cfg.world_size = world_size
    problems = models.apply_preset(cfg)
    if cfg.bf16 is None:
        cfg.bf16 = device == "cuda"
    muon = cfg.optimizer == "muon-nsgd"
    if cfg.weight_decay is None:
        cfg.weight_decay = 0.01 if muon else 0.1
    if cfg.clip_grad is None:
        cfg.clip_grad = 0.0 if muon else 1.0
    if cfg.transformer_impl == "auto":
        cfg.transformer_impl = "transformer_engine" if device == "cuda" and te_available else "local"
    if not problems:
        if cfg.global_batch_size is None and world_size % (
                cfg.tensor_model_parallel_size * cfg.pipeline_model_parallel_size) == 0:
            cfg.global_batch_size = cfg.micro_batch_size * max(cfg.data_parallel_size, 1)
        problems = validate(cfg, device, te_available)
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
            + plan.new_layer_lr_problems(cfg) + models.memory_problems(cfg))


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
