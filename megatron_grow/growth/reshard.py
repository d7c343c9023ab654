"""Load a checkpoint of a shallower model into a grown model, in any TP/PP layout.

Checkpoints key layer weights per global layer (``decoder.layers.<i>.<param>``), so growing is a
rename: the target layer t loads the source layer the plan assigns it. Layers the plan leaves
new keep their fresh initialisation. One load cannot fill two target tensors from the same source
shard on one rank, so copies of one source go in successive load passes.

Optimizer state (``--grow-optimizer-state``):
  inherit  trained (moved) layers and the non-layer weights keep their Adam moments; new and
           copied layers start empty (zero moments)
  copy     as inherit, and copied layers take their source layer's moments
  reset    every moment starts empty
The optimizer step count, LR scheduler, iteration and data position continue unchanged.
"""

from __future__ import annotations

import torch
from megatron.core import dist_checkpointing
from megatron.core.dist_checkpointing.mapping import ShardedTensor, ShardedTensorFactory

from megatron_grow import checkpointing
from megatron_grow.growth.plan import TargetLayer
from megatron_grow.models.names import LAYER, is_residual_output

# --grow-optimizer-state: which target layers take their planned source's moments (the rest start empty)
MOMENTS = {"inherit": lambda t: t.trained, "copy": lambda t: True, "reset": lambda t: False}


def source_key(key: str, plan: list[TargetLayer], take) -> str | None:
    """The source key (checkpoint key or, same layout, parameter name) that feeds the target tensor
    ``key``, or None to keep it as it is. ``take(t)``: whether target layer t takes its planned source."""
    m = LAYER.match(key)
    if not m:
        return key
    t = plan[int(m.group(2))]
    if not t.mlp_from_source and m.group(3).startswith(".mlp."):  # dense <-> MoE: the MLP stays new
        return None
    return f"{m.group(1)}{t.source}{m.group(3)}" if t.source is not None and take(t) else None


def _passes(plan: list[TargetLayer], take) -> list[set[int]]:
    """Target layers grouped so that no pass loads one source layer twice."""
    seen: dict[int, int] = {}
    out: list[set[int]] = []
    for t in plan:
        if t.source is None or not take(t):
            continue
        k = seen.get(t.source, 0)
        seen[t.source] = k + 1
        if len(out) <= k:
            out.append(set())
        out[k].add(t.index)
    return out or [set()]


def _select(tensors: dict, plan, take, layers: set[int], first_pass: bool) -> dict:
    """The sharded tensors to load in one pass, re-keyed to the source checkpoint's keys."""
    out = {}
    for name, sh in tensors.items():
        if not isinstance(sh, (ShardedTensor, ShardedTensorFactory)):  # (gated fc1 is a factory)
            continue
        m = LAYER.match(sh.key)
        if (m and int(m.group(2)) not in layers) or (not m and not first_pass):
            continue
        src = source_key(sh.key, plan, take)
        if src is not None:
            sh.key = src
            out[name] = sh
    return out


@torch.no_grad()
def load_grown(path: str, model, optimizer, plan: list[TargetLayer], optimizer_state: str = "inherit") -> dict:
    """Fill ``model`` (the grown model, freshly initialised) and ``optimizer`` from the source
    checkpoint at ``path`` following ``plan``; zero the output projections the plan asks for.
    Returns the source checkpoint's common state (iteration, scheduler, data position, ...)."""
    common = checkpointing.read_common(path)
    from_masters = checkpointing.holds_masters(common)  # (the source's exact fp32 weights, when bf16 saved it)
    weights = lambda t: True  # noqa: E731  every planned source is loaded into the weights
    moments = MOMENTS[optimizer_state]
    params = {**dict(model.named_parameters()), **dict(model.named_buffers())}  # (MoE router expert bias)
    masters = [m for g in optimizer.optimizer.param_groups for m in g["params"]]  # state-dict id order
    exact = {}  # parameter name -> the fp32 value it loaded (for the fp32 masters of a bf16 model)
    for take, kind in ((weights, "model"), (moments, "optimizer")):
        if kind == "optimizer" and optimizer_state == "reset":
            break
        for i, layers in enumerate(_passes(plan, take)):
            sd = checkpointing.model_sharded_state_dict(model)
            if kind == "model":
                flat = _select(checkpointing.fp32_weights(model, sd, from_masters), plan, take, layers, i == 0)
            else:
                osd = optimizer.sharded_state_dict(sd, is_loading=True)
                state = {f"{pid}/{k}": v for pid, s in osd["state"].items() for k, v in s.items()}
                flat = _select(state, plan, take, layers, i == 0)
            # several targets may read one source shard: that is not a save, skip the
            # one-writer-per-shard integrity check
            # collective: every rank loads in every pass, with or without tensors of its own
            loaded = dist_checkpointing.load(dict(flat), path, validate_access_integrity=False)
            for name in flat:  # (load also returns the checkpoint's common state: ignore it)
                tensor = loaded[name]
                if kind == "model":
                    params[name].copy_(tensor)
                    exact[name] = tensor
                else:  # "<param id>/<state key>"
                    pid, key = name.split("/")
                    optimizer.optimizer.state[masters[int(pid)]][key].copy_(tensor)
    if optimizer_state != "reset":  # reset: the zero moments and step 0 of a new optimizer stay
        optimizer.set_step(common["optimizer"].get("common_step", 0.0))
    zeroed = zero_output_projections(model, plan)
    optimizer.sync_masters_from_params()  # (new layers: their init; zeroed projections: zero)
    optimizer.set_masters({n: t for n, t in exact.items() if n not in zeroed})
    return common


def zero_output_projections(model, plan: list[TargetLayer]) -> set[str]:
    """Zero the residual output projections of the layers the plan asks for; returns their names."""
    out = set()
    for i, layer in enumerate(model.decoder.layers):
        if plan[layer.layer_number - 1].zero_output:
            for name, p in layer.named_parameters():
                if is_residual_output(name):  # weight and bias
                    p.zero_()
                    out.add(f"decoder.layers.{i}.{name}")
    return out
