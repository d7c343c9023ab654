"""Optimizer path: a torch optimizer over megatron DDP's reduced grads, with fp32 master weights
for bf16 models, global-norm clipping over the model-parallel group, a megatron-core
OptimizerParamScheduler, and a dist_checkpointing sharded state dict keyed like the parameters.

--use-distributed-optimizer shards the optimizer (ZeRO-1): the parameters are cut into pieces, each
with one owner in its data-parallel group (routed experts: the expert-data-parallel group), largest
first to the least loaded rank. Only the owner keeps a piece's fp32 master and moments and steps it,
then each rank broadcasts what it updated. AdamW's pieces are row ranges (it is elementwise), at most
1/(8 DP) of the group's parameters each, so no rank holds much more than 1/DP; Muon-NSGD's are whole
tensors (Newton-Schulz needs the whole matrix, NSGD the whole tensor's norm). Checkpoints hold the
same keys either way (each piece's owner writes its rows), so a checkpoint loads at any DP size,
sharded or not, and growth moves the state as before.

megatron-core's own optimizer wrappers assume CUDA tensors; this path runs the same on CPU and GPU.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.distributed as dist
from megatron.core import parallel_state as ps
from megatron.core.dist_checkpointing.optimizer import (
    get_param_id_to_sharded_param_map,
    optim_state_to_sharding_state,
)
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler
from megatron.core.tensor_parallel import param_is_not_tensor_parallel_duplicate
from megatron.core.transformer.module import param_is_not_shared

from megatron_grow.config import RunConfig
from megatron_grow.optim.muon import MuonNSGD, ParamInfo, assign_owners
from megatron_grow.optim.newton_schulz import unavailable_reason


def optimizer_problems(cfg: RunConfig, device: str) -> list[str]:
    """Muon-NSGD's flags, and whether --ns-backend can run on ``device``."""
    P = []
    if cfg.decoupled_lr is not None and not (math.isfinite(cfg.decoupled_lr) and cfg.decoupled_lr > 0):
        P.append(f"--decoupled-lr {cfg.decoupled_lr} must be a finite number > 0")
    elif cfg.decoupled_min_lr is not None and cfg.decoupled_lr is None:
        P.append("--decoupled-min-lr is the LR the --decoupled-lr group decays to: give --decoupled-lr too")
    elif cfg.decoupled_min_lr is not None and not 0 <= cfg.decoupled_min_lr <= cfg.decoupled_lr:
        P.append(f"--decoupled-min-lr {cfg.decoupled_min_lr} must be in [0, --decoupled-lr {cfg.decoupled_lr}]")
    if cfg.optimizer == "muon-nsgd":
        if not 0 <= cfg.muon_momentum < 1:
            P.append(f"--muon-momentum {cfg.muon_momentum} must be in [0, 1)")
        if cfg.muon_ns_steps < 1:
            P.append(f"--muon-ns-steps must be >= 1 (got {cfg.muon_ns_steps})")
        try:
            if len(ns_coefficients(cfg)) != 3:
                raise ValueError
        except ValueError:
            P.append(f"--muon-ns-coefficients {cfg.muon_ns_coefficients!r} must be three numbers a,b,c "
                     f"(quintic default 3.4445,-4.7750,2.0315)")
        why = cfg.ns_backend != "auto" and unavailable_reason(cfg.ns_backend, torch.device(device))
        if why:
            P.append(f"--ns-backend {cfg.ns_backend}: {why}; use --ns-backend auto or torch")
    return P


def sample_schedule_problems(cfg: RunConfig) -> list[str]:
    """The schedule's lengths in iterations or in samples, not both (Megatron-LM's rule); read before
    finalize fills --train-iters, so that it tells whether --train-iters was given."""
    P = []
    samples = [f"--{k.replace('_', '-')}" for k in ("train_samples", "lr_decay_samples", "lr_warmup_samples",
                                                     "lr_wsd_decay_samples") if getattr(cfg, k) is not None]
    iters = [f"--{k.replace('_', '-')}" for k in ("train_iters", "lr_decay_iters", "lr_warmup_iters",
                                                   "lr_wsd_decay_iters") if getattr(cfg, k) is not None]
    if cfg.train_samples is not None and iters:
        P.append(f"--train-samples counts the run in samples: give its schedule in samples too (--lr-decay-samples, "
                 f"--lr-warmup-samples, --lr-wsd-decay-samples), not {', '.join(iters)}")
    elif cfg.train_samples is None and samples:
        P.append(f"{', '.join(samples)} count samples: they need --train-samples instead of --train-iters (or give "
                 f"--lr-decay-iters, --lr-warmup-iters, --lr-wsd-decay-iters)")
    for k in ("train_samples", "lr_decay_samples", "lr_decay_iters"):
        if getattr(cfg, k) is not None and getattr(cfg, k) < 1:
            P.append(f"--{k.replace('_', '-')} must be >= 1 (got {getattr(cfg, k)})")
    for k in ("lr_warmup_samples", "lr_wsd_decay_samples"):
        if getattr(cfg, k) is not None and getattr(cfg, k) < 0:
            P.append(f"--{k.replace('_', '-')} must be >= 0 (got {getattr(cfg, k)})")
    if cfg.train_samples and cfg.global_batch_size and cfg.train_samples < cfg.global_batch_size:
        P.append(f"--train-samples {cfg.train_samples} is less than one global batch (--global-batch-size "
                 f"{cfg.global_batch_size}): no iteration to train")
    return P


def ns_coefficients(cfg: RunConfig) -> tuple[float, float, float]:
    return tuple(float(x) for x in cfg.muon_ns_coefficients.split(","))


def _no_decay(name: str, p) -> bool:
    return p.ndim < 2 or name.endswith(".bias")


class Optimizer:
    """Wraps a torch optimizer for one model chunk whose grads megatron DDP left in ``main_grad``."""

    def __init__(self, model, cfg):
        from megatron_grow import mup
        from megatron_grow.models.init import global_names
        from megatron_grow.models.names import is_expert, layer_index

        self.model = model
        self.clip_grad = cfg.clip_grad
        names = global_names(model)
        local = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        named = [(names[n], p) for n, p in local]
        self.params = [p for _, p in named]
        self.local_names = [n for n, _ in local]  # (the model's own names: state-dict keys)
        self.expert = [is_expert(n) for n, _ in named]  # routed experts: split over EP, not replicated
        self.has_experts = bool(getattr(cfg, "num_experts", None))  # (a stage may hold none of them)
        # the pieces this rank steps, (parameter index, first row, end row): every parameter whole, or
        # with --use-distributed-optimizer its own share, per (DP group, [the pieces each of its ranks owns])
        self.shares = _ownership(model, self.params, self.expert, split=cfg.optimizer == "adam") \
            if cfg.use_distributed_optimizer else []
        self.pieces = [x for group, per_rank in self.shares for x in per_rank[dist.get_rank(group)]] \
            if self.shares else [(i, 0, len(p)) for i, p in enumerate(self.params)]
        # bf16 models keep fp32 master copies; fp32 models step their own parameters (or rows of them).
        self.masters = [_master(self.params[i], a, b) for i, a, b in self.pieces]
        self.copied = [self.params[i].dtype != torch.float32 for i, _, _ in self.pieces]  # (else the rows themselves)
        # one group per (weight-decay, LR) multiplier pair; the scheduler drives each group's LR
        # between its own max_lr and min_lr (muP scales some groups' LR)
        # (--grow-new-layer-lr-mult: the layers a growth added get groups of their own, marked new_layers)
        # (--decoupled-lr: the input embedding and output layer, as megatron-core marks them, get groups of their
        # own with that LR, unscaled by muP, as in Megatron-LM; they come last, so the other groups keep their ids)
        new = new_layers(cfg)
        def key(n, p):
            if cfg.decoupled_lr is not None and getattr(p, "is_embedding_or_output_parameter", False):
                return 0.0 if _no_decay(n, p) else 1.0, 1.0, False, True
            return 0.0 if _no_decay(n, p) else 1.0, mup.lr_multiplier(cfg, n, p), layer_index(n) in new, False

        def bounds(lr, decoupled):
            if decoupled:
                lo = cfg.decoupled_min_lr if cfg.decoupled_min_lr is not None else cfg.min_lr
                return {"max_lr": cfg.decoupled_lr, "min_lr": lo, "decoupled_lr": True}
            return {"max_lr": cfg.lr * lr, "min_lr": cfg.min_lr * lr}

        # (every rank of a DP group has the same groups, sharded or not: some may hold none of its masters)
        groups: dict[tuple[float, float, bool, bool], list] = {key(n, p): [] for n, p in named}
        for (i, _, _), m in zip(self.pieces, self.masters, strict=True):
            groups[key(*named[i])].append(m)
        groups = [{"params": ms, "wd_mult": wd, **bounds(lr, dec), **({"new_layers": True} if is_new else {})}
                  for (wd, lr, is_new, dec), ms in sorted(groups.items(), key=lambda kv: (
                      kv[0][3], kv[0][1] != 1.0, kv[0][2], -kv[0][0]))]
        self.new_layer_lr = new_layer_lr_factor(cfg) if new else None
        self.last_new_layer_lr = None
        # Group order fixes the state-dict ids: remember the model-param order behind it.
        order = {id(m): j for j, m in enumerate(self.masters)}
        self.group_order = [order[id(m)] for g in groups for m in g["params"]]  # state id -> index in pieces
        if cfg.optimizer == "muon-nsgd":  # (its pieces are whole parameters)
            self.optimizer = _muon(cfg, groups, [named[i] for i, _, _ in self.pieces], self.masters,
                                   spread=not self.shares)
        else:
            # fused: one kernel over all tensors (4x faster than foreach on CPU: benchmarks/throughput.py)
            self.optimizer = torch.optim.AdamW(
                groups, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps,
                weight_decay=cfg.weight_decay, fused=True,
            )
        self.init_state()  # state exists from the start, so every checkpoint has the same keys

    @property
    def param_groups(self):  # what OptimizerParamScheduler drives
        return self.optimizer.param_groups

    def grad_norm(self) -> float:
        """Global L2 norm of the gradients (each shard counted once across TP/PP/DP; routed experts
        summed over their expert-parallel x expert-TP x PP group)."""
        return self.grad_sq().sum().sqrt().item()

    def grad_sq(self) -> torch.Tensor:
        """[dense, routed experts] sums of squared gradients, reduced (grad_norm without the read back)."""
        sq = torch.zeros(2, dtype=torch.float32, device=self.params[0].device)  # [dense, experts]
        for p, expert in zip(self.params, self.expert, strict=True):
            if p.main_grad is not None and param_is_not_shared(p) and param_is_not_tensor_parallel_duplicate(p):
                sq[int(expert)] += p.main_grad.float().pow(2).sum()
        torch.distributed.all_reduce(sq[0:1], group=ps.get_model_parallel_group())
        if self.has_experts:  # collective over all stages, whether or not this one has experts
            torch.distributed.all_reduce(sq[1:2], group=ps.get_expert_tensor_model_pipeline_parallel_group())
        return sq

    @torch.no_grad()
    def step(self, iteration: int | None = None, norm: float | None = None) -> float:
        """One update; ``iteration`` (completed iterations) sets the new layers' LR factor after growth;
        ``norm``: the gradient norm when the caller already computed it."""
        norm = self.grad_norm() if norm is None else norm
        scale = self.clip_grad / (norm + 1e-6) if self.clip_grad and norm > self.clip_grad else 1.0
        for (i, a, b), m in zip(self.pieces, self.masters, strict=True):
            g = self.params[i].main_grad[a:b].float()
            m.grad = g * scale if scale != 1.0 else g
        new = [g for g in self.optimizer.param_groups if g.get("new_layers")] if iteration is not None else []
        scheduled = [g["lr"] for g in new]
        for g in new:  # this step only: the scheduler's values stay its own
            g["lr"] *= self.new_layer_lr(iteration)
            self.last_new_layer_lr = g["lr"]
        self.optimizer.step()
        for g, lr in zip(new, scheduled, strict=True):
            g["lr"] = lr
        for (i, a, b), m, copied in zip(self.pieces, self.masters, self.copied, strict=True):
            m.grad = None
            if copied:
                self.params[i][a:b].copy_(m)
        self._share_updates()
        return norm

    def _share_updates(self) -> None:
        """Sharded: each rank broadcasts the parameters it owns (one flat buffer per rank) to its group."""
        for group, per_rank in self.shares:
            for r, pieces in enumerate(per_rank):
                if not pieces:
                    continue
                rows = [self.params[i].detach()[a:b] for i, a, b in pieces]
                flat = torch.cat([x.reshape(-1) for x in rows])
                dist.broadcast(flat, src=dist.get_global_rank(group, r), group=group)
                if r != dist.get_rank(group):
                    for x, y in zip(rows, flat.split([x.numel() for x in rows]), strict=True):
                        x.copy_(y.view_as(x))

    # --- checkpointing -------------------------------------------------------------------
    def init_state(self):
        """Empty state (Adam: zero moments, step 0; Muon-NSGD: zero momentum) for every parameter
        that has none."""
        for g in self.optimizer.param_groups:
            for m in g["params"]:
                if not self.optimizer.state[m]:
                    self.optimizer.state[m] = (
                        self.optimizer.empty_state(m) if isinstance(self.optimizer, MuonNSGD) else
                        {"step": _step_tensor(0.0, m), "exp_avg": torch.zeros_like(m),
                         "exp_avg_sq": torch.zeros_like(m)})

    def sharded_state_dict(self, model_sharded_state_dict, is_loading: bool = False):
        """Adam moments (and, saving a bf16 model, the fp32 masters) as ShardedTensors keyed
        ``optimizer.state.<k>.<param key>``, so they reshard across TP/PP exactly like the weights.
        (A load reads the masters as the model's weights: checkpointing.fp32_weights, set_masters.)"""
        if is_loading:
            self.init_state()
        sd = self.optimizer.state_dict()
        for k, j in enumerate(self.group_order):
            if self.copied[j] and k in sd["state"] and not is_loading:
                sd["state"][k]["fp32_param"] = self.masters[j]
        whole = get_param_id_to_sharded_param_map(model_sharded_state_dict, self.params)
        id_map = {k: _rows(whole[i], a, b, len(self.params[i]))
                  for k, (i, a, b) in enumerate(self.pieces[j] for j in self.group_order)}
        step = self.common_step()
        optim_state_to_sharding_state(sd, id_map, exclude_keys=("step",))
        if is_loading:  # the state goes by parameter; the groups are this run's (load_state_dict)
            del sd["param_groups"]
        if self.shares:  # the owner is the one data-parallel replica that writes (and reads) the state
            for s in sd["state"].values():
                for t in s.values():
                    t.replica_id = (*t.replica_id[:-1], 0)
        sd["common_step"] = step
        return sd

    def common_step(self) -> float:
        """Adam's step count, one for all parameters (0 without Adam state)."""
        steps = {float(s["step"]) for s in self.optimizer.state.values() if "step" in s}
        if len(steps) > 1:
            raise ValueError(f"optimizer steps differ across parameters: {steps}")
        return steps.pop() if steps else 0.0

    def set_step(self, step: float) -> None:
        """Set Adam's step count (one, shared by all parameters) where state exists."""
        for m, state in self.optimizer.state.items():
            if "step" in state:
                state["step"] = _step_tensor(step, m)

    @torch.no_grad()
    def set_masters(self, weights: dict) -> None:
        """The fp32 masters of a bf16 model from exact fp32 values of its weights (by the model's
        parameter names; a name not given keeps its master)."""
        for (i, a, b), m, copied in zip(self.pieces, self.masters, self.copied, strict=True):
            w = weights.get(self.local_names[i])
            if copied and w is not None:
                m.copy_(w[a:b])

    @torch.no_grad()
    def sync_masters_from_params(self) -> None:
        """After the weights were changed in place (growth), make the fp32 masters match them."""
        for (i, a, b), m, copied in zip(self.pieces, self.masters, self.copied, strict=True):
            if copied:
                m.copy_(self.params[i][a:b])

    def load_state_dict(self, sd):
        """The saved state, by parameter, into this run's param groups: their hyperparameters and LR bounds
        are the ones this run's flags give (a resume whose schedule differs was refused, or asked for the
        flags' schedule; --decoupled-lr may add or drop groups)."""
        bounds = [(g["max_lr"], g["min_lr"]) for g in self.optimizer.param_groups]
        sd["param_groups"] = self.optimizer.state_dict()["param_groups"]
        step = sd.pop("common_step")
        for s in sd["state"].values():
            s["step"] = torch.tensor(step)
        self.optimizer.load_state_dict(sd)
        for g, (hi, lo) in zip(self.optimizer.param_groups, bounds, strict=True):
            g["max_lr"], g["min_lr"] = hi, lo


def _step_tensor(step: float, m: torch.Tensor) -> torch.Tensor:
    """Adam's step count as fused AdamW keeps it: fp32, on the parameter's device."""
    return torch.tensor(float(step), dtype=torch.float32, device=m.device)


def _master(p: torch.Tensor, a: int, b: int) -> torch.Tensor:
    """The tensor the optimizer steps for rows a:b of ``p``: ``p`` itself (fp32, whole), a view of its
    rows (fp32), or an fp32 copy of them (bf16)."""
    if p.dtype != torch.float32:
        return p.detach()[a:b].float().clone()
    return p if (a, b) == (0, len(p)) else p.detach()[a:b]


def _rows(sharded, a: int, b: int, rows: int):
    """A parameter's ShardedTensor narrowed to its local rows a:b (a piece of the sharded optimizer);
    pieces have equal sizes that divide the local rows, so their offsets stay on a regular grid."""
    if (a, b) == (0, rows):
        return sharded
    axis = sharded.prepend_axis_num  # the local tensor's first axis in the global one
    offset = list(sharded.global_offset)
    offset[axis] += a
    frag = list(sharded.axis_fragmentations)
    frag[axis] *= rows // (b - a)
    return dataclasses.replace(sharded, data=sharded.data[a:b], local_shape=(b - a, *sharded.local_shape[1:]),
                               global_offset=tuple(offset), axis_fragmentations=tuple(frag))


def _ownership(model, params: list, expert: list[bool], split: bool) -> list[tuple[object, list[list[tuple]]]]:
    """--use-distributed-optimizer: (group, the pieces (index, first row, end row) each of its ranks owns),
    for the data-parallel group (dense parameters) and the expert-data-parallel group (routed experts),
    balanced by size (the state's memory). ``split``: cut parameters into equal row ranges of at most
    1/(8 x group size) of the group's parameters (not those saved through a factory: the gated MLP's
    [gate; up], whose rows the checkpoint interleaves across TP ranks). All TP ranks of one DP position
    own the same pieces (same local shapes, same rule), so TP-sharded Muon matrices are orthogonalised
    together."""
    from megatron.core.dist_checkpointing.mapping import ShardedTensor

    from megatron_grow.checkpointing import model_sharded_state_dict

    plain = set()
    if split:
        sharded = get_param_id_to_sharded_param_map(model_sharded_state_dict(model), params)
        plain = {i for i, t in sharded.items() if isinstance(t, ShardedTensor) and t.axis_fragmentations is not None}
    out = []
    for kind, group in ((False, ps.get_data_parallel_group()), (True, ps.get_expert_data_parallel_group())):
        idx = [i for i, e in enumerate(expert) if e == kind]
        if kind and not idx:
            continue
        n = dist.get_world_size(group)
        most = sum(params[i].numel() for i in idx) / (8 * n)
        pieces = []
        for i in idx:
            rows, numel = len(params[i]), params[i].numel()
            k = next(k for k in range(1, rows + 1) if rows % k == 0 and (numel / k <= most or k == rows)) \
                if i in plain and n > 1 else 1
            pieces += [(i, j * rows // k, (j + 1) * rows // k) for j in range(k)]
        sizes = [params[i][a:b].numel() for i, a, b in pieces]
        owner = assign_owners(sizes, n)
        out.append((group, [[x for x, o in zip(pieces, owner, strict=True) if o == r] for r in range(n)]))
    return out


def new_layers(cfg) -> set[int]:
    """Global indices of the layers a growth inside this run added (not trained before it), when
    --grow-new-layer-lr-mult / --grow-new-layer-lr-iters ask for their own LR; else empty."""
    if cfg.grown_from_layers is None or (cfg.grow_new_layer_lr_mult == 1 and not cfg.grow_new_layer_lr_iters):
        return set()
    from megatron_grow.growth.plan import make_plan
    from megatron_grow.models import growth_kinds

    plan = make_plan(cfg.grown_from_layers, cfg.num_layers, cfg.grow_placement, cfg.grow_init,
                     growth_kinds(cfg, cfg.grown_from_layers, cfg.num_layers))
    return {t.index for t in plan if not t.trained}


def new_layer_lr_factor(cfg):
    """iteration -> the new layers' LR factor: M on the first step after growth (tau), then linearly
    back to 1 over N iterations (N = 0: M to the end of the run)."""
    tau, M, N = cfg.grown_at_iter, cfg.grow_new_layer_lr_mult, cfg.grow_new_layer_lr_iters

    def factor(iteration: int) -> float:
        k = iteration - tau
        return M if not N else M + (1.0 - M) * min(max(k, 0), N) / N

    return factor


def _muon(cfg, groups, named, masters, spread: bool = True) -> MuonNSGD:
    """Muon-NSGD over the masters: Muon for 2-D weights inside decoder layers, NSGD for the rest."""
    from megatron_grow.models.names import is_expert, is_muon_matrix

    tp = ps.get_tensor_model_parallel_world_size()
    heads, ng = cfg.num_attention_heads, cfg.num_query_groups or cfg.num_attention_heads
    head_dim = cfg.kv_channels or cfg.hidden_size // heads
    info = {}
    for (n, p), m in zip(named, masters, strict=True):
        sharded = getattr(p, "tensor_model_parallel", False) and tp > 1
        info[id(m)] = ParamInfo(
            muon=is_muon_matrix(n, p.ndim),  # (each routed expert's own matrices too)
            expert=is_expert(n),
            tp_dim=p.partition_dim if sharded else None,
            qkv=(ng // tp, heads // ng, head_dim) if n.endswith("self_attention.linear_qkv.weight") else None,
        )
    dp, edp = ps.get_data_parallel_world_size(), ps.get_expert_data_parallel_world_size()
    # (sharded, each rank steps only what it owns: nothing to spread)
    spread = spread and (cfg.muon_dp_spread == "on" or (cfg.muon_dp_spread == "auto" and dp > 1))
    return MuonNSGD(
        groups, info, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.muon_momentum,
        nesterov=cfg.muon_nesterov, ns_steps=cfg.muon_ns_steps, coefficients=ns_coefficients(cfg),
        scale_mode=cfg.muon_scale_mode, split_qkv=cfg.muon_split_qkv, tp_mode=cfg.muon_tp_mode,
        tp_group=ps.get_tensor_model_parallel_group() if tp > 1 else None,
        dp_group=ps.get_data_parallel_group() if spread and dp > 1 else None,
        expert_dp_group=ps.get_expert_data_parallel_group() if spread and edp > 1 else None, ns_backend=cfg.ns_backend,
        ns_dtype=torch.bfloat16 if cfg.bf16 else None,  # (--bf16: bf16 Newton-Schulz on CPU too, as on GPU)
    )


def build_scheduler(optimizer: Optimizer, cfg) -> OptimizerParamScheduler:
    """megatron-core's scheduler, stepped once per iteration: linear warmup, then wsd / cosine /
    constant / linear decay to --min-lr at --lr-decay-iters (by default --train-iters); each param group
    between its own max_lr and min_lr (muP, --decoupled-lr)."""
    T, wsd = cfg.train_iters, cfg.wsd_decay_iters
    # a resume whose schedule flags differ from the checkpoint's was refused before this, unless
    # --override-opt-param-scheduler asks for the flags' schedule (megatron's checks are the backstop).
    # Megatron-LM counts this scheduler's steps in samples; here in iterations, with lengths given in samples
    # (--train-samples) divided by the global batch, exactly: the same LR at every iteration.
    return OptimizerParamScheduler(
        optimizer, init_lr=0.0, max_lr=cfg.lr, min_lr=cfg.min_lr, lr_warmup_steps=cfg.warmup_iters,
        lr_decay_steps=cfg.decay_iters, lr_decay_style="WSD" if cfg.lr_decay_style == "wsd" else cfg.lr_decay_style,
        start_wd=cfg.weight_decay,
        end_wd=cfg.weight_decay, wd_incr_steps=T, wd_incr_style="constant",
        wsd_decay_steps=wsd if cfg.lr_decay_style == "wsd" else None,
        lr_wsd_decay_style=cfg.lr_wsd_decay_style if cfg.lr_decay_style == "wsd" else None,
        use_checkpoint_opt_param_scheduler=False, override_opt_param_scheduler=cfg.override_opt_param_scheduler,
    )
