"""Growth plan: which target layer comes from which source layer, and how it is initialised.

Placements (source L0 layers -> target L1 layers):
  bottom      new layers under the trained ones: trained source j -> target L1 - L0 + j (default)
  top         new layers above the trained ones: trained source j -> target j
  stack       the source blocks repeated in order: target i takes source i % L0 (first L0 trained)
  interleave  each source block repeated in place: target i takes source i * L0 // L1

Initialisation of the new (non-trained) layers:
  random      the model's own init rule (the only choice from 0 layers)
  copy        a copy of the source block the placement assigns (bottom/top: new layer k takes
              source k % L0)
  zero        random, with the residual-branch output projections (attention linear_proj, MLP
              linear_fc2) zeroed, so each new layer is the identity at growth
  copy_zeroL  copy, with the same output projections zeroed: the grown model computes exactly the
              source model's function

MoE models (deepseek-v3): each layer's kind (dense or MoE) follows its target position (the first
--moe-first-dense-layers are dense). A trained layer must keep its kind (else the plan is refused
and says which placement would work); a new layer copied from a source layer of the other kind
takes that layer's attention and norms, and its MLP keeps its fresh (random) init, with the output
projections zeroed under zero / copy_zeroL. MoE output projections are every expert's and the
shared expert's fc2; copy takes every expert, the router and its expert bias.

The growth flags' own checks are here too (``problems``, ``grow_schedule_problems``,
``new_layer_lr_problems``); megatron_grow/finalize.py re-checks the grown config as a whole.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from megatron_grow.config import SCHEDULE_FIELDS, RunConfig, grow_steps, growth_requested

PLACEMENTS = ("bottom", "top", "stack", "interleave")
INITS = ("random", "copy", "zero", "copy_zeroL")
OPTIMIZER_STATE_MODES = ("inherit", "copy", "reset")  # what growth does with the moments (growth/reshard.py)


@dataclass(frozen=True)
class TargetLayer:
    index: int
    source: int | None  # the source layer whose weights it takes; None: freshly initialised
    trained: bool  # True: it IS that source layer (moved, not copied)
    zero_output: bool  # residual-branch output projections zeroed
    kind: str = "dense"  # "dense" or "moe" (MoE models: by target position)
    mlp_from_source: bool = True  # False: the source is of the other kind; the MLP stays freshly initialised

    def describe(self) -> str:
        kind = f" [{self.kind}]" if self.kind == "moe" or not self.mlp_from_source else ""
        if self.trained:
            return f"layer {self.index:3d}{kind} <- source layer {self.source} (trained, moved)"
        what = f"copy of source layer {self.source}" if self.source is not None else "new, random init"
        if self.source is not None and not self.mlp_from_source:
            what += " (attention and norms; the MLP is of the other kind: new, random init)"
        return f"layer {self.index:3d}{kind} <- {what}" + (", output projections zeroed" if self.zero_output else "")


def warnings(source_layers: int, placement: str, init: str) -> list[str]:
    """What a plan that works costs: zero-output layers under trained ones (benchmarks/growth_spike.py)."""
    if source_layers >= 1 and placement == "bottom" and init in ("zero", "copy_zeroL"):
        return [f"warning: --grow-init {init} with --grow-placement bottom puts the new zero-output layers under "
                "the trained ones, where the residual stream is the small raw embeddings: their first updates "
                "move the trained layers' normalised input and the train loss jumps (quickstart: +3 nats, ~20 "
                "iterations to recover). --grow-placement stack (or top) puts them above the trained layers "
                "and the loss does not rise"]
    return []


def problems(source_layers: int, target_layers: int, placement: str, init: str, flag: str = "--grow",
             kinds: tuple[list[str], list[str]] | None = None) -> list[str]:
    """Every reason the growth (source -> target, placement, init) cannot be planned. ``kinds``:
    (source, target) layer kinds of an MoE model, "dense" or "moe" per layer."""
    P = []
    if target_layers <= source_layers:
        P.append(f"{flag}-to-layers {target_layers} must exceed the source model's {source_layers} layers")
    if placement not in PLACEMENTS:
        P.append(f"{flag}-placement {placement!r}: choose one of {', '.join(PLACEMENTS)}")
    if init not in INITS:
        P.append(f"{flag}-init {init!r}: choose one of {', '.join(INITS)}")
    if source_layers == 0 and init in ("copy", "copy_zeroL"):
        P.append(f"{flag}-init {init}: a 0-layer model has no block to copy; use random or zero")
    if source_layers == 0 and placement in ("stack", "interleave"):
        P.append(f"{flag}-placement {placement}: a 0-layer model has no block to repeat; use bottom or top")
    if not P and kinds:
        moved = [t for t in _layers(source_layers, target_layers, placement, init) if t.trained]
        for t in moved:
            if kinds[0][t.source] != kinds[1][t.index]:
                P.append(f"{flag}-placement {placement} moves trained source layer {t.source} ({kinds[0][t.source]}) "
                         f"to target layer {t.index}, which is {kinds[1][t.index]} (the first --moe-first-dense-layers "
                         f"layers are dense); choose a placement that keeps each trained layer's kind "
                         f"(e.g. top) or change --moe-first-dense-layers")
    return P


def make_plan(source_layers: int, target_layers: int, placement: str = "bottom", init: str = "random",
              kinds: tuple[list[str], list[str]] | None = None) -> list[TargetLayer]:
    found = problems(source_layers, target_layers, placement, init, kinds=kinds)
    if found:
        raise ValueError("; ".join(found))
    plan = _layers(source_layers, target_layers, placement, init)
    if kinds:
        plan = [dataclasses.replace(t, kind=kinds[1][t.index],
                                    mlp_from_source=t.source is None or kinds[0][t.source] == kinds[1][t.index])
                for t in plan]
    return plan


def _layers(source_layers: int, target_layers: int, placement: str, init: str) -> list[TargetLayer]:
    L0, L1 = source_layers, target_layers
    if placement == "bottom":
        assigned = {L1 - L0 + j: j for j in range(L0)}
        trained = set(assigned)
        new = [i for i in range(L1) if i not in trained]
        assigned.update({i: k % L0 for k, i in enumerate(new)} if L0 else {})
    elif placement == "top":
        assigned = {j: j for j in range(L0)}
        trained = set(assigned)
        assigned.update({i: (i - L0) % L0 for i in range(L0, L1)} if L0 else {})
    elif placement == "stack":
        assigned = {i: i % L0 for i in range(L1)}
        trained = set(range(L0))
    else:  # interleave
        assigned = {i: i * L0 // L1 for i in range(L1)}
        trained = {min(i for i in range(L1) if assigned[i] == j) for j in range(L0)}
    copies = init in ("copy", "copy_zeroL")
    return [
        TargetLayer(i, assigned.get(i) if (i in trained or copies) else None, i in trained,
                    i not in trained and init in ("zero", "copy_zeroL"))
        for i in range(L1)
    ]


def format_plan(plan: list[TargetLayer], source_layers: int, placement: str, init: str) -> str:
    head = f"growth plan: {source_layers} -> {len(plan)} layers, placement {placement}, init {init}"
    return "\n".join([head] + ["  " + t.describe() for t in plan])


def grow_schedule_problems(cfg: RunConfig) -> list[str]:
    """--grow-schedule against the single-growth flags, and its steps' order."""
    single = (*SCHEDULE_FIELDS, "grow_at_fraction", "grow_at", "grow_pipeline_layers")
    given = [f"--{k.replace('_', '-')}" for k in single if getattr(cfg, k) is not None]
    if given:
        return [f"--grow-schedule sets every growth's depth, iteration and layout; drop {', '.join(given)} "
                "(a layout after a step: LAYERS@ITER:tpN:ppN:epN)"]
    try:
        steps = grow_steps(cfg.grow_schedule)
    except ValueError as e:
        return [str(e)]
    layers = [cfg.num_layers] + [s["grow_to_layers"] for s in steps]
    iters = [s["grow_at_iter"] for s in steps]
    if any(b <= a for seq in (layers, iters) for a, b in zip(seq, seq[1:], strict=False)):
        return [f"--grow-schedule {cfg.grow_schedule}: each step must grow deeper than the one before (from "
                f"--num-layers {cfg.num_layers}) at a later iteration"]
    return []


def new_layer_lr_problems(cfg: RunConfig) -> list[str]:
    P = []
    if not (math.isfinite(cfg.grow_new_layer_lr_mult) and cfg.grow_new_layer_lr_mult >= 0):
        P.append(f"--grow-new-layer-lr-mult {cfg.grow_new_layer_lr_mult} must be a finite number >= 0 "
                 "(1: the shared LR; 0 with --grow-new-layer-lr-iters N: a re-warmup of the new layers)")
    if cfg.grow_new_layer_lr_iters < 0:
        P.append(f"--grow-new-layer-lr-iters {cfg.grow_new_layer_lr_iters} must be >= 0 (0: the multiplier "
                 "holds to the end of the run)")
    if (cfg.grow_new_layer_lr_mult != 1 or cfg.grow_new_layer_lr_iters) and not growth_requested(cfg):
        P.append("--grow-new-layer-lr-mult / --grow-new-layer-lr-iters act on the layers a growth inside this run "
                 "adds; give --grow-to-layers and --grow-at-iter (an offline-grown checkpoint has no new layers "
                 "to this run)")
    if cfg.grow_new_layer_lr_mult == 0 and not cfg.grow_new_layer_lr_iters:
        P.append("--grow-new-layer-lr-mult 0 without --grow-new-layer-lr-iters would freeze the new layers; "
                 "give --grow-new-layer-lr-iters N for a re-warmup over N iterations")
    return P
