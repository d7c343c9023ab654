"""Run by tests/test_muon.py under torchrun with 2 processes (gloo): Muon-NSGD updates of
tensor-parallel shards vs the TP1 update of the full tensors, per --muon-tp-mode, and the DP-spread
step vs every rank doing all the work. Prints one JSON line per check from rank 0."""

import json

import torch
import torch.distributed as dist

from megatron_grow.optim.muon import MuonNSGD, ParamInfo

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
G, H, D, IN = 4, 2, 8, 48  # query groups, heads per group, head dim, input width


def full_tensors(seed):
    g = torch.Generator().manual_seed(seed)
    shapes = {"qkv": (G * (H + 2) * D, IN), "fc1": (96, IN), "fc2": (IN, 96), "bias": (96,), "norm": (IN,)}
    return {k: torch.randn(s, generator=g) for k, s in shapes.items()}


# (tensor, TP partition dim or None, is a Muon matrix, fused QKV layout)
LAYOUT = {"qkv": (0, True, True), "fc1": (0, True, False), "fc2": (1, True, False), "bias": (0, False, False),
          "norm": (None, False, False)}


def run(tp_mode, split, shard, spread=False, steps=3):
    """Three steps on the full (shard=False) or TP-sharded (shard=True) tensors; returns the full
    result (shards gathered)."""
    params, info = {}, {}
    for k, t in full_tensors(0).items():
        dim, muon, qkv = LAYOUT[k]
        local = t.chunk(world, dim=dim)[rank] if shard and dim is not None else t
        params[k] = local.clone().requires_grad_(False)
        groups = G // world if shard else G
        info[id(params[k])] = ParamInfo(muon=muon, tp_dim=dim if shard else None,
                                        qkv=(groups, H, D) if qkv else None)
    opt = MuonNSGD([{"params": list(params.values())}], info, lr=0.05, weight_decay=0.1, split_qkv=split,
                   tp_mode=tp_mode, tp_group=dist.group.WORLD if shard else None,
                   dp_group=dist.group.WORLD if spread else None)
    for s in range(steps):
        for k, t in full_tensors(100 + s).items():
            dim = LAYOUT[k][0]
            params[k].grad = t.chunk(world, dim=dim)[rank] if shard and dim is not None else t
        opt.step()
    out = {}
    for k, p in params.items():
        dim = LAYOUT[k][0]
        if shard and dim is not None:
            parts = [torch.empty_like(p) for _ in range(world)]
            dist.all_gather(parts, p.contiguous())
            p = torch.cat(parts, dim=dim)
        out[k] = p
    return out


def rel(a, b):
    return max(((a[k] - b[k]).norm() / b[k].norm()).item() for k in a)


start = full_tensors(0)
refs = {}
for split in ("off", "qkv", "group"):
    ref = refs[split] = run("duplicated", split, shard=False)
    moved = rel(ref, start)
    for mode in ("duplicated", "distributed", "blockwise"):
        err = rel(run(mode, split, shard=True), ref)
        if rank == 0:
            print(json.dumps({"check": "tp", "split": split, "mode": mode, "rel_err": err, "moved": moved}), flush=True)
# splitting changes the QKV update (and only it)
if rank == 0:
    for split in ("qkv", "group"):
        print(json.dumps({"check": "split", "split": split,
                          "qkv_diff": rel({"qkv": refs[split]["qkv"]}, {"qkv": refs["off"]["qkv"]}),
                          "fc1_diff": rel({"fc1": refs[split]["fc1"]}, {"fc1": refs["off"]["fc1"]})}), flush=True)
# DP spread: both ranks hold the same grads; each orthogonalises half the matrices
err = rel(run("duplicated", "off", shard=False, spread=True), run("duplicated", "off", shard=False))
if rank == 0:
    print(json.dumps({"check": "dp_spread", "rel_err": err}), flush=True)
dist.destroy_process_group()
