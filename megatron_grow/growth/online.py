"""Grow inside a running job at iteration tau, optionally re-laying TP/PP over the same ranks.

The (model, optimizer, layout) state goes through a dist checkpoint: save the source state, free
it, re-initialise the parallel groups for the target layout, build the grown model, and load it
with the growth plan (megatron_grow/growth/reshard.py). That is exactly what the offline
``tools/expand_checkpoint.py`` + resume does, so both give the same run after tau.
The checkpoint goes to ``<--save>/grow_iter_<tau>`` when --save is set (kept, as a record of the
source model), else to a temporary directory on rank 0's machine (single-node jobs).
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
import time

import torch.distributed as dist

from megatron_grow import checkpointing, config, platform, runstate
from megatron_grow.growth.plan import format_plan, make_plan
from megatron_grow.growth.reshard import load_grown
from megatron_grow.models import growth_kinds


def _workdir(cfg) -> tuple[str, bool]:
    if cfg.save:
        return os.path.join(cfg.save, "grow_source"), False
    path = [tempfile.mkdtemp(prefix="megatron_grow_") if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(path, src=0)
    return path[0], True


def grow(cfg, state, data, device, mon, evaluate):
    """Returns (grown cfg, grown state, growth event). ``evaluate(cfg, state)`` gives the held-out loss."""
    t0 = time.time()
    loss_before = evaluate(cfg, state)
    target = config.grown_config(cfg)
    plan = make_plan(cfg.num_layers, target.num_layers, cfg.grow_placement, cfg.grow_init,
                     growth_kinds(cfg, cfg.num_layers, target.num_layers))
    mon.print(format_plan(plan, cfg.num_layers, cfg.grow_placement, cfg.grow_init))
    root, temporary = _workdir(cfg)
    path = checkpointing.save(root, state.iteration, state.module, state.optimizer, state.scheduler,
                              runstate.common_state(cfg, state))
    # free the source model, its grad buffers and optimizer state before building the target (the
    # caller still holds the State object itself)
    state.model = state.optimizer = state.scheduler = None
    gc.collect()
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
    loss_after = evaluate(target, new)
    event = {"event": "grow", "iter": new.iteration, "from_layers": cfg.num_layers, "to_layers": target.num_layers,
             "from_layout": cfg.layout, "to_layout": target.layout, "seconds": time.time() - t0,
             "loss_before": loss_before, "loss_after": loss_after}
    return target, new, event
