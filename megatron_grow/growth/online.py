"""Grow inside a running job at iteration tau, optionally re-laying TP/PP over the same ranks.

Two paths to the same grown state (the tests check equal losses after growth):

* in memory, when the layout stays (same TP, EP and DP, one pipeline stage, no
  --use-distributed-optimizer, whose row ownership changes with the parameter set): build the grown
  model beside the source and copy each target tensor from the source tensor the plan assigns it
  (the same local shard), the optimizer state as ``--grow-optimizer-state`` says, then free the
  source. Nothing is written.
* through a dist checkpoint otherwise: save the source state, free it, re-initialise the parallel
  groups for the target layout, build the grown model and load it with the growth plan
  (megatron_grow/growth/reshard.py), exactly what the offline ``tools/expand_checkpoint.py`` +
  resume does. The checkpoint goes to ``<--save>/grow_source`` when --save is set (kept, as a record
  of the source model), else to a temporary directory on rank 0's machine (single-node jobs).

``MEGATRON_GROW_GROW_VIA_CHECKPOINT=1`` takes the checkpoint path where memory would do (debugging).
The held-out loss is measured before growth and, unless the init preserves the function (zero /
copy_zeroL), after it; ``MEGATRON_GROW_GROW_EVAL_AFTER=1`` measures it after growth always.
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
import time

import torch
import torch.distributed as dist

from megatron_grow import checkpointing, config, mup, platform, runstate
from megatron_grow.growth.plan import format_plan, make_plan
from megatron_grow.growth.reshard import MOMENTS, load_grown, source_key, zero_output_projections
from megatron_grow.models import growth_kinds

VIA_CHECKPOINT = "MEGATRON_GROW_GROW_VIA_CHECKPOINT"
EVAL_AFTER = "MEGATRON_GROW_GROW_EVAL_AFTER"


def in_memory(cfg, target) -> bool:
    """Whether growing ``cfg`` into ``target`` re-lays the state in memory (else through a checkpoint)."""
    return (cfg.layout == target.layout and cfg.pipeline_model_parallel_size == 1
            and not cfg.use_distributed_optimizer and os.environ.get(VIA_CHECKPOINT) != "1")


def preserves_function(cfg, target, plan) -> bool:
    """Every target layer is a trained one or adds nothing to the residual stream (zero / copy_zeroL),
    and no depth-muP multiplier rescales the trained layers' branches (mup.py)."""
    return all(t.trained or t.zero_output for t in plan) and \
        (cfg.num_layers == 0 or mup.depth_mult(cfg) == mup.depth_mult(target))


def grow(cfg, state, data, device, mon, evaluate):
    """Returns (grown cfg, grown state, growth event). ``evaluate(cfg, state)`` gives the held-out loss."""
    t0 = time.time()
    loss_before = evaluate(cfg, state)
    target = config.grown_config(cfg)
    plan = make_plan(cfg.num_layers, target.num_layers, cfg.grow_placement, cfg.grow_init,
                     growth_kinds(cfg, cfg.num_layers, target.num_layers))
    mon.print(format_plan(plan, cfg.num_layers, cfg.grow_placement, cfg.grow_init))
    via = "memory" if in_memory(cfg, target) else "checkpoint"
    new = (_grow_in_memory if via == "memory" else _grow_via_checkpoint)(cfg, target, state, data, device, plan)
    measured = not preserves_function(cfg, target, plan) or os.environ.get(EVAL_AFTER) == "1"
    loss_after = evaluate(target, new) if measured else loss_before
    event = {"event": "grow", "iter": new.iteration, "from_layers": cfg.num_layers, "to_layers": target.num_layers,
             "from_layout": cfg.layout, "to_layout": target.layout, "via": via, "seconds": time.time() - t0,
             "loss_before": loss_before, "loss_after": loss_after, "loss_after_measured": measured}
    return target, new, event


def _workdir(cfg) -> tuple[str, bool]:
    if cfg.save:
        return os.path.join(cfg.save, "grow_source"), False
    path = [tempfile.mkdtemp(prefix="megatron_grow_") if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(path, src=0)
    return path[0], True


def _free(state) -> None:
    """Drop the source model, its grad buffers and optimizer state (the caller still holds the State)."""
    state.model = state.optimizer = state.scheduler = None
    gc.collect()


def _grow_via_checkpoint(cfg, target, state, data, device, plan):
    root, temporary = _workdir(cfg)
    path = checkpointing.save(root, state.iteration, state.module, state.optimizer, state.scheduler,
                              runstate.common_state(cfg, state))
    _free(state)
    platform.init_model_parallel(target.tensor_model_parallel_size, target.pipeline_model_parallel_size, cfg.seed,
                                 target.expert_model_parallel_size)
    data.relayout()
    new = runstate.build_state(target, device)
    common = load_grown(path, new.module, new.optimizer, plan, cfg.grow_optimizer_state)
    new.scheduler.load_state_dict(common["scheduler"])
    runstate.restore_progress(new, common)
    dist.barrier()
    if temporary and dist.get_rank() == 0:
        shutil.rmtree(root, ignore_errors=True)
    return new


def _grow_in_memory(cfg, target, state, data, device, plan):
    platform.seed_rngs(cfg.seed)  # as the checkpoint path's init_model_parallel does: the same grown run
    new = runstate.build_state(target, device)
    copy_grown(state, new, plan, cfg.grow_optimizer_state)
    new.scheduler.load_state_dict(state.scheduler.state_dict())
    runstate.restore_progress(new, {"iteration": state.iteration, **runstate.common_state(cfg, state)})
    _free(state)
    return new


@torch.no_grad()
def copy_grown(src, new, plan, optimizer_state: str = "inherit") -> None:
    """Fill the grown State ``new`` from ``src`` at the same layout, as load_grown fills it from src's
    checkpoint: the weights and saved buffers (MoE expert bias) of every planned source, a bf16 model's
    fp32 masters exactly, the moments and step count ``optimizer_state`` asks for; then zero the output
    projections the plan asks for. (Unsharded optimizers: master j is parameter j's.)"""
    every = lambda t: True  # noqa: E731  every planned source feeds the weights (and masters)
    old = src.module.state_dict(keep_vars=True)  # (the tensors a checkpoint holds: parameters, saved buffers)
    for name, t in new.module.state_dict(keep_vars=True).items():
        key = source_key(name, plan, every) if isinstance(t, torch.Tensor) else None
        if key is not None:
            t.copy_(old[key])
    so, no = src.optimizer, new.optimizer
    source = dict(zip(so.local_names, zip(so.masters, so.copied, strict=True), strict=True))
    masters = {}  # target parameter name -> the source's fp32 master (bf16)
    for name, m in zip(no.local_names, no.masters, strict=True):
        key = source_key(name, plan, every)
        if key is not None and source[key][1]:
            masters[name] = source[key][0]
        key = source_key(name, plan, MOMENTS[optimizer_state])
        if key is not None and optimizer_state != "reset":
            for k, v in so.optimizer.state[source[key][0]].items():
                if k != "step":
                    no.optimizer.state[m][k].copy_(v)
    if optimizer_state != "reset":  # reset: the zero moments and step 0 of a new optimizer stay
        no.set_step(so.common_step())
    zeroed = zero_output_projections(new.module, plan)
    no.sync_masters_from_params()  # (new layers: their init; zeroed projections: zero)
    no.set_masters({n: m for n, m in masters.items() if n not in zeroed})
