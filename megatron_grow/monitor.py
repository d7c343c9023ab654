"""Metrics: the JSONL stream, TensorBoard and Weights & Biases (rank 0 only), the console progress bar;
and the loop's Megatron-LM hooks on every rank (--profile, --manual-gc, --empty-unused-memory-level),
with the checks of their flags (``monitor_problems``)."""

from __future__ import annotations

import dataclasses
import gc
import importlib.util
import json
import math
import os
import sys


def strict(record: dict) -> dict:
    """Non-finite floats as null: every metrics line stays strict JSON (a NaN loss is logged, not hidden)."""
    def finite(v):
        if isinstance(v, list):
            return [finite(x) for x in v]
        return None if isinstance(v, float) and not math.isfinite(v) else v

    return {k: finite(v) for k, v in record.items()}


def scalars(record: dict) -> dict[str, float]:
    """A metrics record as TensorBoard / W&B scalars: its numeric fields (not ``iter``, the step; not the
    per-rank lists, strings and flags), each under its group: ``growth/`` for the growth event, ``eval/``
    for a held-out evaluation, ``train/`` for an iteration."""
    group = "growth" if record.get("event") == "grow" else "eval" if "val_loss" in record else "train"
    return {f"{group}/{k}": v for k, v in record.items()
            if k != "iter" and isinstance(v, (int, float)) and not isinstance(v, bool)}


def wandb_dir(cfg) -> str | None:
    """Where W&B writes its local files (it makes DIR/wandb/...): --wandb-save-dir, else --save/wandb, else
    None (wandb's default: the working directory)."""
    return cfg.wandb_save_dir or (os.path.join(cfg.save, "wandb") if cfg.save else None)


def trace_path(cfg, rank: int) -> str:
    """The --use-pytorch-profiler trace of ``rank`` (a Chrome trace, gzipped)."""
    return os.path.join(cfg.tensorboard_dir, "torch_profile",
                        f"rank{rank}-iters{cfg.profile_step_start + 1}-{cfg.profile_step_end}.json.gz")


def profiled(cfg, rank: int) -> bool:
    return cfg.profile and (not cfg.profile_ranks or rank in cfg.profile_ranks)


def monitor_problems(cfg, device: str) -> list[str]:
    """The metrics, profiling and loop-hook flags: what each needs, and no flag that would do nothing."""
    P = []
    if cfg.tensorboard_dir and importlib.util.find_spec("tensorboard") is None:
        P.append("--tensorboard-dir needs the tensorboard package: pip install tensorboard (or pip install -e .[dev])")
    if cfg.wandb_project and importlib.util.find_spec("wandb") is None:
        P.append("--wandb-project needs the wandb package: pip install wandb (or pip install -e .[dev])")
    for name in ("wandb_exp_name", "wandb_save_dir", "wandb_entity"):
        if getattr(cfg, name) is not None and not cfg.wandb_project:
            P.append(f"--{name.replace('_', '-')} does nothing without --wandb-project PROJECT")
    if not cfg.profile:
        P += [f"--{n.replace('_', '-')} does nothing without --profile"
              for n in ("use_pytorch_profiler", "profile_ranks") if getattr(cfg, n)]
    else:
        start, end = cfg.profile_step_start, cfg.profile_step_end
        if not 0 <= start < end:
            P.append(f"--profile-step-start {start} and --profile-step-end {end}: need 0 <= start < end (the "
                     "iterations after start, up to and including end, are profiled)")
        elif cfg.train_iters is not None and start >= cfg.train_iters:
            P.append(f"--profile-step-start {start}: the run ends at --train-iters {cfg.train_iters}, so nothing "
                     "would be profiled; lower it")
        bad = [r for r in cfg.profile_ranks or () if not 0 <= r < cfg.world_size]
        if bad:
            P.append(f"--profile-ranks {' '.join(map(str, bad))}: no such rank (ranks 0..{cfg.world_size - 1})")
        if not cfg.use_pytorch_profiler and device != "cuda":
            P.append("--profile without --use-pytorch-profiler marks an Nsight Systems capture range "
                     "(cudaProfilerStart/Stop), which needs CUDA; add --use-pytorch-profiler for a torch.profiler "
                     f"trace on {device}")
        if cfg.use_pytorch_profiler and not cfg.tensorboard_dir:
            P.append("--use-pytorch-profiler writes its trace to --tensorboard-dir DIR/torch_profile: give "
                     "--tensorboard-dir")
        elif cfg.use_pytorch_profiler:
            P += [f"--use-pytorch-profiler: {trace_path(cfg, r)} exists (traces are not overwritten); give another "
                  "--tensorboard-dir or other --profile-step-start/--profile-step-end"
                  for r in range(cfg.world_size) if profiled(cfg, r) and os.path.exists(trace_path(cfg, r))]
    if cfg.manual_gc_interval < 0:
        P.append(f"--manual-gc-interval {cfg.manual_gc_interval} must be >= 0 (0: collect only around evaluations)")
    elif cfg.manual_gc_interval and not cfg.manual_gc:
        P.append("--manual-gc-interval does nothing without --manual-gc")
    if cfg.empty_unused_memory_level not in (0, 1, 2):
        P.append(f"--empty-unused-memory-level {cfg.empty_unused_memory_level} must be 0, 1 or 2")
    return P


class Monitor:
    def __init__(self, cfg, rank: int, start_iter: int):
        self.active = rank == 0
        self.file = self.tb = self.bar = self.wandb = None
        self.throughput = cfg.log_throughput
        if not self.active:
            return
        if cfg.metrics_file:
            os.makedirs(os.path.dirname(os.path.abspath(cfg.metrics_file)), exist_ok=True)
            self.file = open(cfg.metrics_file, "a")
        if cfg.tensorboard_dir:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(cfg.tensorboard_dir)
        if cfg.wandb_project:
            import wandb

            where = wandb_dir(cfg)
            if where:
                os.makedirs(where, exist_ok=True)
            self.wandb = wandb.init(project=cfg.wandb_project, name=cfg.wandb_exp_name, entity=cfg.wandb_entity,
                                    dir=where, config=dataclasses.asdict(cfg))
        if cfg.progress:
            from tqdm import tqdm

            self.bar = tqdm(total=cfg.train_iters, initial=start_iter, unit="it", file=sys.stderr,
                            dynamic_ncols=True, mininterval=1.0)

    def log(self, record: dict) -> None:
        if not self.active:
            return
        record = strict(record)
        if self.file:
            self.file.write(json.dumps(record, allow_nan=False) + "\n")
            self.file.flush()
        if self.tb or self.wandb:
            tags = scalars(record)
            for k, v in tags.items() if self.tb else ():
                self.tb.add_scalar(k, v, record["iter"])
            if self.wandb:
                self.wandb.log(tags, step=record["iter"])
        if record.get("lm_loss") is not None and self.bar is not None:
            gpu = {}
            if record.get("gpu_mem_used_gib"):
                gpu["mem_gib"] = f"{max(record['gpu_mem_used_gib']):.1f}/{max(record['gpu_mem_total_gib']):.0f}"
            if record.get("mfu") is not None:
                gpu["mfu"] = f"{record['mfu']:.1%}"
            if record.get("tflops_per_gpu") is not None:
                gpu["tflops"] = f"{record['tflops_per_gpu']:.3g}"
            self.bar.set_postfix(loss=f"{record['lm_loss']:.4f}", tok_s=f"{record['tokens_per_s']:.0f}", **gpu,
                                 refresh=False)

    def throughput_fields(self, flops_per_iter: float, seconds: float, world_size: int) -> dict:
        """--log-throughput: Megatron-LM's "throughput per GPU (TFLOP/s/GPU)", the iteration's model FLOPs
        (the same count as Megatron-LM's) over its seconds and the processes."""
        return {"tflops_per_gpu": flops_per_iter / (seconds * 1e12 * world_size)} if self.throughput else {}

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def print(self, msg: str) -> None:
        if not self.active:
            return
        if self.bar is not None:
            self.bar.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.file:
            self.file.close()
        if self.tb:
            self.tb.close()
        if self.wandb:
            self.wandb.finish()
        self.bar = self.file = self.tb = self.wandb = None


class LoopHooks:
    """Megatron-LM's loop flags, on every rank. ``start`` before the first iteration, ``before_iteration(n)``
    and ``after_iteration(n)`` around each (n: the iterations done), ``before_eval`` / ``after_eval`` around
    each held-out evaluation, ``close`` when the loop ends, however it ends.

    --profile: from the iteration after --profile-step-start through --profile-step-end, as Megatron-LM's
    Nsight Systems range (cudaProfilerStart/Stop) or, with --use-pytorch-profiler, torch.profiler, its
    steps named ProfilerStep#<iteration>, written as a Chrome trace (``trace_path``) when the range ends or
    the run does. --manual-gc: Python's collector off while training, a full collection at the start, every
    --manual-gc-interval iterations and before each evaluation, a young one after it (--manual-gc-eval)."""

    def __init__(self, cfg, rank: int, device):
        self.cfg, self.rank, self.cuda = cfg, rank, device.type == "cuda"
        self.profiling = profiled(cfg, rank)
        self.prof, self.nsys, self.gc_was_enabled = None, False, None

    def start(self) -> None:
        if self.cfg.manual_gc:
            self.gc_was_enabled = gc.isenabled()
            gc.disable()
            gc.collect()

    def before_iteration(self, done: int) -> None:
        if not (self.profiling and done == self.cfg.profile_step_start):
            return
        import torch

        if not self.cfg.use_pytorch_profiler:
            torch.cuda.profiler.start()
            self.nsys = True
            return
        from torch.profiler import ProfilerAction, ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
        self.prof = profile(activities=activities, schedule=lambda step: ProfilerAction.RECORD)  # (named steps)
        self.prof.step_num = done + 1
        self.prof.start()

    def after_iteration(self, done: int) -> None:
        if self.cfg.manual_gc and self.cfg.manual_gc_interval and done % self.cfg.manual_gc_interval == 0:
            gc.collect()
        if done >= self.cfg.profile_step_end:
            self.stop_profiling()
        elif self.prof is not None:
            self.prof.step()

    def before_eval(self) -> None:
        if self.cfg.manual_gc and self.cfg.manual_gc_eval:
            gc.collect()

    def after_eval(self) -> None:
        if self.cfg.manual_gc and self.cfg.manual_gc_eval:
            gc.collect(generation=0)

    def stop_profiling(self) -> None:
        if self.nsys:
            import torch

            torch.cuda.profiler.stop()
            self.nsys = False
        if self.prof is not None:
            prof, self.prof = self.prof, None
            prof.stop()
            path = trace_path(self.cfg, self.rank)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            prof.export_chrome_trace(path)

    def close(self) -> None:
        self.stop_profiling()
        if self.gc_was_enabled:
            gc.enable()
        self.gc_was_enabled = None


def empty_unused_memory(cfg, level: int) -> None:
    """--empty-unused-memory-level: release the CUDA allocator's cached blocks at the points of ``level`` (1:
    after each forward-backward and evaluation batch, 2: also after the optimizer step). Nothing on CPU."""
    if cfg.empty_unused_memory_level >= level:
        import torch

        torch.cuda.empty_cache()  # (a no-op where CUDA was never initialised)
