"""Muon-NSGD: Muon for the 2-D hidden matrices, normalised SGD for every other tensor.

Per parameter, with one shared learning rate ``lr`` and decoupled weight decay ``wd``:

    buf <- mu * buf + g                     (momentum; Nesterov: u = g + mu * buf, else u = buf)
    p   <- p * (1 - lr * wd)
    p   <- p - lr * scale * NS(u)           hidden matrices (Newton-Schulz orthogonalisation)
    p   <- p - lr * nscale * u / ||u||_F    everything else (embeddings, head, norms, biases)

``scale`` is ``spectral`` sqrt(max(1, rows/cols)) or ``match_adamw`` 0.2 sqrt(max(rows, cols))
(Moonlight: the update's RMS matches AdamW's, so AdamW's LR carries over); ``nscale`` is 1 for
``spectral`` and 0.2 sqrt(numel) for ``match_adamw`` (the same RMS 0.2 for the other tensors).
Norms and shapes are those of the FULL (unsharded) tensor, so the update is layout-independent.

Tensor parallelism (``tp_mode``): ``duplicated`` gathers the full matrix on every TP rank,
orthogonalises it and keeps the local shard; ``distributed`` runs Newton-Schulz on the shards with
one all-reduce of the Gram matrix per iteration; ``blockwise`` orthogonalises the local shard
alone (approximate, no communication). The first two equal the TP1 update up to rounding.
``split_qkv`` orthogonalises the fused QKV weight as separate Q, K, V matrices (``qkv``) or per
GQA group (``group``: each group's Q, K and V, all local to one TP rank).
With data parallelism (``dp_spread``) each matrix's Newton-Schulz runs on one DP rank only and the
updates are summed over the DP group, instead of every rank repeating all of them. Routed experts
(MoE) are orthogonalised each on its own; they differ across expert-parallel ranks, so their work
is spread over the expert-data-parallel group instead (expert TP uses the TP ranks).
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.distributed as dist

from megatron_grow.optim.newton_schulz import QUINTIC, newton_schulz, newton_schulz_sharded, prepare


@dataclasses.dataclass
class ParamInfo:
    """What the optimizer must know of a parameter beyond its local tensor."""

    muon: bool  # a 2-D hidden matrix (else normalised SGD)
    tp_dim: int | None = None  # dimension sharded over the TP group (None: replicated)
    qkv: tuple[int, int, int] | None = None  # (local query groups, heads per group, head dim)
    expert: bool = False  # a routed expert's matrix: differs across expert-parallel ranks


def _split(W: torch.Tensor, qkv, mode: str) -> list[torch.Tensor]:
    """The matrices (batched where leading dims) that get orthogonalised separately."""
    if qkv is None or mode == "off":
        return [W]
    g, h, d = qkv
    V = W.view(g, h + 2, d, W.shape[-1])
    parts = [V[:, :h].reshape(g, h * d, -1), V[:, h], V[:, h + 1]]
    return parts if mode == "group" else [x.reshape(-1, W.shape[-1]) for x in parts]


def _merge(parts: list[torch.Tensor], W: torch.Tensor, qkv, mode: str) -> torch.Tensor:
    if qkv is None or mode == "off":
        return parts[0]
    g, h, d = qkv
    q, k, v = (x.reshape(g, -1, d, W.shape[-1]) for x in parts)
    return torch.cat([q, k, v], dim=1).view_as(W)


def assign_owners(costs: list[float], n: int) -> list[int]:
    """An owner in 0..n-1 for each item: largest first, each to the least loaded rank (ties: lowest
    rank, then item order), so every rank computes the same assignment."""
    load, owner = [0.0] * n, [0] * len(costs)
    for i in sorted(range(len(costs)), key=lambda i: -costs[i]):
        r = load.index(min(load))
        owner[i] = r
        load[r] += costs[i]
    return owner


class MuonNSGD(torch.optim.Optimizer):
    def __init__(self, params, info: dict[int, ParamInfo], lr: float = 1e-2, weight_decay: float = 0.01,
                 momentum: float = 0.95, nesterov: bool = True, ns_steps: int = 5, coefficients=QUINTIC,
                 scale_mode: str = "match_adamw", split_qkv: str = "off", tp_mode: str = "duplicated",
                 tp_group=None, dp_group=None, expert_dp_group=None, ns_backend: str = "auto",
                 ns_dtype: torch.dtype | None = None):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay))
        self.info = info  # id(param) -> ParamInfo
        self.momentum, self.nesterov = momentum, nesterov
        self.ns_steps, self.coefficients = ns_steps, tuple(coefficients)
        device = next((p.device for g in self.param_groups for p in g["params"]), torch.device("cpu"))
        self.ns_backend = prepare(ns_backend, device)  # (the sharded "distributed" mode is torch ops)
        self.ns_dtype = ns_dtype  # the torch backend's matmul dtype (None: bf16 on GPU, fp32 on CPU)
        self.scale_mode, self.split_qkv, self.tp_mode = scale_mode, split_qkv, tp_mode
        self.tp_group, self.dp_group, self.expert_dp_group = tp_group, dp_group, expert_dp_group
        self.tp = dist.get_world_size(tp_group) if tp_group is not None else 1

    @staticmethod
    def empty_state(p: torch.Tensor) -> dict:
        return {"momentum_buffer": torch.zeros_like(p)}

    # --- update directions ------------------------------------------------------------------
    def _full_shape(self, t: torch.Tensor, tp_dim: int | None) -> list[int]:
        shape = list(t.shape)
        if tp_dim is not None:
            shape[tp_dim] *= self.tp
        return shape

    def _scale(self, rows: int, cols: int) -> float:
        if self.scale_mode == "spectral":
            return math.sqrt(max(1.0, rows / cols))
        return 0.2 * math.sqrt(max(rows, cols))

    def _orthogonalise(self, u: torch.Tensor, info: ParamInfo) -> torch.Tensor:
        """Scaled Newton-Schulz of the full matrix, as this rank's shard of it."""
        sharded = info.tp_dim is not None and self.tp > 1
        mode = self.tp_mode if sharded else "local"
        if mode == "duplicated":  # gather, orthogonalise the full matrix, keep the local shard
            shards = [torch.empty_like(u) for _ in range(self.tp)]
            dist.all_gather(shards, u.contiguous(), group=self.tp_group)
            full = torch.cat(shards, dim=info.tp_dim)
            out = self._orthogonalise(full, dataclasses.replace(info, tp_dim=None,
                                      qkv=info.qkv and (info.qkv[0] * self.tp, *info.qkv[1:])))
            return out.chunk(self.tp, dim=info.tp_dim)[dist.get_rank(self.tp_group)]
        parts = _split(u, info.qkv, self.split_qkv)
        out = []
        for x in parts:
            # (per-group parts, batched 3-D, are whole groups local to this rank)
            rows, cols = self._full_shape(x, info.tp_dim if x.ndim == 2 else None)[-2:]
            if mode == "distributed" and x.ndim == 2:
                o = newton_schulz_sharded(x, info.tp_dim - 2, self.tp_group, self.ns_steps, self.coefficients,
                                          self.ns_dtype)
            else:
                o = newton_schulz(x, self.ns_steps, self.coefficients, self.ns_backend, self.ns_dtype)
            out.append(o * self._scale(rows, cols))
        return _merge(out, u, info.qkv, self.split_qkv)

    def _normalised(self, updates: list[tuple[torch.Tensor, ParamInfo]]) -> list[torch.Tensor]:
        """u / ||u||_F (full-tensor norms: one all-reduce over TP for all sharded tensors)."""
        if not updates:
            return []
        sq = torch.stack([u.float().pow(2).sum() for u, _ in updates])
        if self.tp > 1:
            sharded = torch.tensor([i.tp_dim is not None for _, i in updates], device=sq.device)
            first = dist.get_rank(self.tp_group) == 0
            local = torch.where(sharded | first, sq, torch.zeros_like(sq))  # replicated: count once
            dist.all_reduce(local, group=self.tp_group)
            sq = local
        out = []
        for (u, info), s in zip(updates, sq, strict=True):
            numel = math.prod(self._full_shape(u, info.tp_dim))
            nscale = 1.0 if self.scale_mode == "spectral" else 0.2 * math.sqrt(numel)
            out.append(u * (nscale / (s.sqrt() + 1e-7)))  # (on the device: no read back per tensor)
        return out

    # --- the step --------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure=None):
        todo = []  # (param, group, momentum-corrected update)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state.update(self.empty_state(p))
                buf = state["momentum_buffer"]
                buf.mul_(self.momentum).add_(p.grad)
                todo.append((p, group, p.grad.add(buf, alpha=self.momentum) if self.nesterov else buf.clone()))
        dense = [(p, g, u) for p, g, u in todo if self.info[id(p)].muon and not self.info[id(p)].expert]
        experts = [(p, g, u) for p, g, u in todo if self.info[id(p)].muon and self.info[id(p)].expert]
        others = [(p, g, u) for p, g, u in todo if not self.info[id(p)].muon]
        # routed experts differ across expert-parallel ranks: spread them over their own DP group
        directions = self._matrix_directions(dense, self.dp_group)
        directions += self._matrix_directions(experts, self.expert_dp_group)
        matrices = dense + experts
        directions += self._normalised([(u, self.info[id(p)]) for p, _, u in others])
        for (p, group, _), d in zip(matrices + others, directions, strict=True):
            p.mul_(1 - group["lr"] * group["weight_decay"])
            p.add_(d, alpha=-group["lr"])

    def _matrix_directions(self, matrices, group) -> list[torch.Tensor]:
        dp = dist.get_world_size(group) if group is not None else 1
        if dp == 1:
            return [self._orthogonalise(u, self.info[id(p)]) for p, _, u in matrices]
        # spread: matrix i is orthogonalised by DP rank owner[i] (balanced by Newton-Schulz cost), then
        # one all-reduce over DP hands every rank every update (the others contribute zeros)
        owner = assign_owners([u.numel() * min(u.shape) for _, _, u in matrices], dp)
        me = dist.get_rank(group)
        out = [self._orthogonalise(u, self.info[id(p)]) if owner[i] == me else torch.zeros_like(u)
               for i, (p, _, u) in enumerate(matrices)]
        if out:
            flat = torch.cat([o.reshape(-1) for o in out])
            dist.all_reduce(flat, group=group)
            out = [f.view_as(o) for f, o in zip(flat.split([o.numel() for o in out]), out, strict=True)]
        return out
