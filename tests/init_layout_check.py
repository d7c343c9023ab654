"""Run by tests/test_models.py under torchrun with 4 processes (gloo): builds each model of LAYOUTS at
its TP/PP/EP layout and gathers every rank's shards into full tensors by global name, with plain
chunk logic (not megatron_grow.models.init's), into the torch file argv[1] (rank 0)."""

import sys

import torch
import torch.distributed as dist

from megatron_grow import config, platform
from megatron_grow.finalize import finalize
from megatron_grow.models import build_model
from megatron_grow.models.init import global_names, tp_size_rank

# hidden 64; llama3 with 8 heads in 4 KV groups so that TP4 splits the GQA groups
MODELS = {"llama3": ["--model", "llama3", "--num-attention-heads", "8", "--num-query-groups", "4"],
          "gpt2": ["--model", "gpt2", "--num-attention-heads", "4"],
          "deepseek-v3": ["--model", "deepseek-v3", "--q-lora-rank", "32", "--kv-lora-rank", "32", "--qk-head-dim",
                          "16", "--qk-pos-emb-head-dim", "8", "--v-head-dim", "16", "--moe-ffn-hidden-size", "32",
                          "--moe-shared-expert-intermediate-size", "32"]}
COMMON = ["--preset", "tiny", "--hidden-size", "64", "--ffn-hidden-size", "128", "--seq-length", "32",
          "--vocab-size", "1000", "--num-layers", "2", "--mock-data", "--device", "cpu"]
LAYOUTS = {"llama3-tp4": ("llama3", 4, 1, 1), "llama3-tp2pp2": ("llama3", 2, 2, 1),
           "gpt2-tp2pp2": ("gpt2", 2, 2, 1), "deepseek-v3-tp2ep2": ("deepseek-v3", 2, 1, 2)}


def args(model: str) -> list[str]:
    return [*MODELS[model], *COMMON]


def gathered(model) -> dict[str, torch.Tensor]:
    """Full tensors by global name from every rank's shards (replicas deduplicated)."""
    gated = model.config.gated_linear_unit
    names = global_names(model)
    mine = []
    for n, p in model.named_parameters():
        tp, rank = tp_size_rank(n)
        dim = p.partition_dim if getattr(p, "tensor_model_parallel", False) and tp > 1 else None
        mine.append((names[n], rank, dim, gated and "linear_fc1" in n, p.detach().clone()))
    every = [None] * dist.get_world_size()
    dist.all_gather_object(every, mine)
    shards: dict[str, dict] = {}
    for name, rank, dim, glu, t in (x for r in every for x in r):
        shards.setdefault(name, {"dim": dim, "glu": glu, "parts": {}})["parts"][rank] = t
    out = {}
    for name, s in shards.items():
        parts = [s["parts"][r] for r in sorted(s["parts"])]
        if s["dim"] is None:
            out[name] = parts[0]
        elif s["glu"]:  # each local fc1 is [gate shard; up shard]
            halves = [p.chunk(2, dim=s["dim"]) for p in parts]
            out[name] = torch.cat([h[0] for h in halves] + [h[1] for h in halves], dim=s["dim"])
        else:
            out[name] = torch.cat(parts, dim=s["dim"])
    return out


if __name__ == "__main__":
    platform.init_distributed("cpu")
    result = {}
    for layout, (model, tp, pp, ep) in LAYOUTS.items():
        flags = ["--tensor-model-parallel-size", str(tp), "--pipeline-model-parallel-size", str(pp)]
        if ep > 1:
            flags += ["--expert-model-parallel-size", str(ep)]
        cfg = finalize(config.parse_args([*args(model), *flags]), dist.get_world_size(), "cpu")
        platform.init_model_parallel(tp, pp, cfg.seed, ep)
        result[layout] = gathered(build_model(cfg, tp, pp, torch.device("cpu")))
    if dist.get_rank() == 0:
        torch.save(result, sys.argv[1])
    platform.shutdown()
