"""Layout-independent initialisation: every weight is a function of (seed, global parameter name).

Each parameter's FULL (unsharded) tensor is drawn from a generator seeded by a hash of the seed
and its global name (layers numbered globally, across pipeline stages), then this rank keeps its
tensor-parallel shard. So a TP1/PP1 run and a TP2/PP2 run start from identical weights.

Rule (GPT-2 / Megatron): weights ~ N(0, std); residual-branch output projections (attention
``linear_proj`` and MLP ``linear_fc2``) ~ N(0, std / sqrt(2 L)); biases 0; norm scales 1.
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


def local_shard(full: torch.Tensor, param, name: str, tp: int, tp_rank: int, gated: bool) -> torch.Tensor:
    """This TP rank's slice of a full tensor, in megatron's local layout."""
    if not getattr(param, "tensor_model_parallel", False) or tp == 1:
        return full
    dim = param.partition_dim
    if gated and "linear_fc1" in name:  # local (dense, expert, shared) fc1 is [gate shard; up shard]
        halves = full.chunk(2, dim=dim)
        return torch.cat([h.chunk(tp, dim=dim)[tp_rank] for h in halves], dim=dim)
    return full.chunk(tp, dim=dim)[tp_rank]


def _generator(seed: int, name: str, device) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def full_init(name: str, shape, seed: int, std: float, num_layers: int, device, dtype,
              width_mult: float = 1.0) -> torch.Tensor:
    """The full tensor the init rule gives the parameter with global name ``name``.

    ``width_mult`` is muP's m (1: standard parametrisation, computed exactly as before)."""
    leaf = name.rsplit(".", 1)[-1]
    if len(shape) == 1:
        is_norm_scale = leaf == "weight" and ("norm" in name or "layer_norm" in name)
        return (torch.ones if is_norm_scale else torch.zeros)(shape, device=device, dtype=dtype)
    if width_mult != 1.0:
        from megatron_grow.mup import init_std_multiplier

        std = std * init_std_multiplier(name, len(shape), width_mult)
    if is_residual_output(name):
        std = std / math.sqrt(2.0 * max(num_layers, 1))
    out = torch.empty(shape, device=device, dtype=torch.float32)
    out.normal_(0.0, std, generator=_generator(seed, name, device))
    return out.to(dtype)


@torch.no_grad()
def init_weights(model, seed: int, std: float, num_layers: int, width_mult: float = 1.0) -> None:
    gated = model.config.gated_linear_unit
    names = global_names(model)
    for name, p in model.named_parameters():
        tp, tp_rank = tp_size_rank(name)
        full = full_init(names[name], full_shape(p, tp), seed, std, num_layers, p.device, p.dtype,
                         width_mult)
        p.copy_(local_shard(full, p, name, tp, tp_rank, gated))


def tp_size_rank(name: str) -> tuple[int, int]:
    """(size, rank) of the tensor-parallel group that shards parameter ``name``: the expert-TP
    group for routed experts, the TP group for everything else."""
    if is_expert(name):
        return ps.get_expert_tensor_parallel_world_size(), ps.get_expert_tensor_parallel_rank()
    return ps.get_tensor_model_parallel_world_size(), ps.get_tensor_model_parallel_rank()
