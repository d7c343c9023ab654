"""Layout-independent initialisation: every weight is a function of (seed, global parameter name).

A 2-D weight's FULL (unsharded) tensor is cut into TILE x TILE tiles (a constant, whatever the
TP/PP/EP layout); tile (i, j) is drawn from its own generator, seeded by a hash of the seed, the
global name (layers numbered globally, across pipeline stages; experts across expert-parallel
ranks) and (i, j). A rank draws only the tiles its tensor-parallel shard overlaps and copies the
overlap, so it pays about 1/TP of the full tensor's draws, and a TP1/PP1 run and a TP2/PP2 run
start from identical weights.

Rule (GPT-2 / Megatron): weights ~ N(0, std); residual-branch output projections (attention
``linear_proj`` and MLP ``linear_fc2``) ~ N(0, std / sqrt(2 L)); biases 0; norm scales 1 (0 with --apply-layernorm-1p).
With muP (width multiplier m != 1, megatron_grow/mup.py): hidden matrices (2-D weights inside the
decoder layers) take std / sqrt(m) (output projections: std / sqrt(m) / sqrt(2 L)), the untied
output layer std / m, embeddings std. Still a function of (seed, global name, target shape/config).
"""

from __future__ import annotations

import hashlib
import math

import torch
from megatron.core import parallel_state as ps

from megatron_grow.models.names import EXPERT, LAYER, is_expert, is_residual_output

TILE = 256  # a tile's side: shards of the usual widths (multiples of 256 x TP) cut no tile


def global_names(model) -> dict[str, str]:
    """Local parameter name -> global name (pipeline-local layer index -> global layer index,
    expert-parallel-local expert index -> global expert index).

    A tied output layer on the last stage maps to the embedding's name, so both copies agree."""
    offsets = {i: layer.layer_number - 1 for i, layer in enumerate(model.decoder.layers)}
    experts = getattr(model.config, "num_moe_experts", None) or 0
    first_expert = ps.get_expert_model_parallel_rank() * (experts // ps.get_expert_model_parallel_world_size()) \
        if experts else 0
    tied = model.share_embeddings_and_output_weights
    out = {}
    for name, _ in model.named_parameters():
        m = LAYER.match(name)
        g = f"{m.group(1)}{offsets[int(m.group(2))]}{m.group(3)}" if m else name
        e = EXPERT.match(g)
        if e:
            g = f"{e.group(1)}{first_expert + int(e.group(2))}{e.group(3)}"
        if tied and g == "output_layer.weight":
            g = "embedding.word_embeddings.weight"
        out[name] = g
    return out


def full_shape(param, tp: int) -> tuple[int, ...]:
    """The shape of the whole tensor a TP shard belongs to."""
    shape = list(param.shape)
    if getattr(param, "tensor_model_parallel", False):
        shape[param.partition_dim] *= tp
    return tuple(shape)


def shard_spans(size: int, tp: int, tp_rank: int, gated: bool) -> list[tuple[int, int]]:
    """The [start, stop) ranges, along the partition dim of a tensor of ``size`` there, that this TP
    rank holds, in its local order: one chunk, or for gated fc1 ([gate; up], local (dense, expert,
    shared) fc1 is [gate shard; up shard]) one chunk of each half."""
    halves = 2 if gated else 1
    n = size // halves // tp
    return [(h * size // halves + tp_rank * n, h * size // halves + (tp_rank + 1) * n) for h in range(halves)]


def _generator(seed: int, name: str, device) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _tile(seed: int, name: str, shape, i: int, j: int, device) -> torch.Tensor:
    """Tile (i, j) of the full 2-D tensor ``name`` of ``shape``: N(0, 1) from its own generator."""
    rows, cols = min(TILE, shape[0] - i * TILE), min(TILE, shape[1] - j * TILE)
    return torch.empty(rows, cols, device=device).normal_(generator=_generator(seed, f"{name}/{i},{j}", device))


def draw(seed: int, name: str, shape, rows: tuple[int, int], cols: tuple[int, int], device) -> torch.Tensor:
    """Rows [rows) x columns [cols) of the full N(0, 1) tensor ``name`` of ``shape`` (fp32), from the
    tiles they overlap only."""
    (r0, r1), (c0, c1) = rows, cols
    out = torch.empty(r1 - r0, c1 - c0, device=device)
    for i in range(r0 // TILE, -(-r1 // TILE)):
        for j in range(c0 // TILE, -(-c1 // TILE)):
            tile = _tile(seed, name, shape, i, j, device)
            a, b, c, d = max(r0, i * TILE), min(r1, (i + 1) * TILE), max(c0, j * TILE), min(c1, (j + 1) * TILE)
            out[a - r0:b - r0, c - c0:d - c0] = tile[a - i * TILE:b - i * TILE, c - j * TILE:d - j * TILE]
    return out


def init_std(name: str, ndim: int, std: float, num_layers: int, width_mult: float = 1.0) -> float:
    """The std the rule gives the matrix with global name ``name``; ``width_mult`` is muP's m (1:
    standard parametrisation)."""
    if width_mult != 1.0:
        from megatron_grow.mup import init_std_multiplier

        std = std * init_std_multiplier(name, ndim, width_mult)
    if is_residual_output(name):
        std = std / math.sqrt(2.0 * max(num_layers, 1))
    return std


def shard_init(name: str, shape, dim: int | None, tp: int, tp_rank: int, gated: bool, seed: int, std: float,
               num_layers: int, device, dtype, width_mult: float = 1.0, norm_scale: float = 1.0) -> torch.Tensor:
    """This TP rank's shard (in megatron's local layout) of the full tensor the init rule gives the
    parameter with global name ``name`` and full ``shape``, split along ``dim`` (None: not split). Norm
    scales start at ``norm_scale`` (0 with --apply-layernorm-1p, whose norms scale by 1 + weight)."""
    if len(shape) == 1:
        leaf = name.rsplit(".", 1)[-1]
        is_norm_scale = leaf == "weight" and ("norm" in name or "layer_norm" in name)
        local = shape[0] // tp if dim is not None else shape[0]
        return torch.full((local,), norm_scale if is_norm_scale else 0.0, device=device, dtype=dtype)
    assert len(shape) == 2, (name, shape)
    whole = [(0, shape[0]), (0, shape[1])]
    blocks = []
    for span in shard_spans(shape[dim], tp, tp_rank, gated) if dim is not None else [None]:
        rows, cols = whole if span is None else (span, whole[1]) if dim == 0 else (whole[0], span)
        blocks.append(draw(seed, name, shape, rows, cols, device))
    out = blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=dim)
    return out.mul_(init_std(name, len(shape), std, num_layers, width_mult)).to(dtype)


@torch.no_grad()
def init_weights(model, seed: int, std: float, num_layers: int, width_mult: float = 1.0) -> None:
    gated = model.config.gated_linear_unit
    norm_scale = 0.0 if model.config.layernorm_zero_centered_gamma else 1.0
    names = global_names(model)
    for name, p in model.named_parameters():
        tp, tp_rank = tp_size_rank(name)
        dim = p.partition_dim if getattr(p, "tensor_model_parallel", False) and tp > 1 else None
        p.copy_(shard_init(names[name], full_shape(p, tp), dim, tp, tp_rank, gated and "linear_fc1" in name,
                           seed, std, num_layers, p.device, p.dtype, width_mult, norm_scale))


def tp_size_rank(name: str) -> tuple[int, int]:
    """(size, rank) of the tensor-parallel group that shards parameter ``name``: the expert-TP
    group for routed experts, the TP group for everything else."""
    if is_expert(name):
        return ps.get_expert_tensor_parallel_world_size(), ps.get_expert_tensor_parallel_rank()
    return ps.get_tensor_model_parallel_world_size(), ps.get_tensor_model_parallel_rank()
