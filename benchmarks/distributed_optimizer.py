"""Optimizer state per rank and step time, sharded (--use-distributed-optimizer) against unsharded.

    python benchmarks/distributed_optimizer.py [--hidden-size 256 --num-layers 8 --steps 6]

For DP 1, 2 and 4, AdamW and Muon-NSGD, sharded and not: one torchrun job each (the trainer's own
setup, CPU/gloo, LLaMA3 on mock data, the same micro-batch per rank), run one after another. Each
reports, per rank, the bytes of optimizer state (moments / momentum, and fp32 masters where they are
copies) and the median time of a training iteration and of the optimizer step alone. Results:
benchmarks/results/distributed_optimizer.json / .md. Target (issue 17): the largest rank's state at
DP4 <= 1.1/4 of the unsharded state.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.launch import RESULTS, run_worker, write  # noqa: E402


def worker(args) -> None:
    import torch
    import torch.distributed as dist

    from megatron_grow import platform, training
    from megatron_grow.train import _quiet, setup

    _quiet()
    h, n = args.hidden_size, int(os.environ.get("WORLD_SIZE", 1))
    cfg, state, data, dev = setup([
        "--model", "llama3", "--preset", "tiny", "--hidden-size", str(h), "--ffn-hidden-size", str(4 * h),
        "--num-attention-heads", str(max(1, h // 64)), "--num-query-groups", str(max(1, h // 128)),
        "--num-layers", str(args.num_layers), "--mock-data", "--vocab-size", str(args.vocab_size),
        "--seq-length", "128", "--micro-batch-size", "2", "--global-batch-size", str(2 * n),
        "--optimizer", args.optimizer, "--train-iters", str(args.steps + 3), "--no-progress",
        *(["--use-distributed-optimizer"] if args.sharded else [])])
    opt = state.optimizer
    step_times = []
    inner = opt.step

    def timed(*a, **kw):
        t0 = time.perf_counter()
        out = inner(*a, **kw)
        step_times.append(time.perf_counter() - t0)
        return out

    opt.step = timed
    batches = data.train_iterator(0)
    iters = []
    for i in range(args.steps + 2):
        t0 = time.perf_counter()
        training.train_step(cfg, state, batches, dev)
        if i >= 2:  # (two warm-up iterations)
            iters.append(time.perf_counter() - t0)
    state_bytes = sum(t.numel() * t.element_size() for s in opt.optimizer.state.values() for t in s.values()
                      if torch.is_tensor(t) and t.dim() > 0)
    state_bytes += sum(m.numel() * m.element_size() for m, c in zip(opt.masters, opt.copied, strict=True) if c)
    mine = {"rank": dist.get_rank(), "state_bytes": state_bytes,
            "iter_s": statistics.median(iters), "opt_step_s": statistics.median(step_times[2:])}
    every = [None] * dist.get_world_size()
    dist.all_gather_object(every, mine)
    if dist.get_rank() == 0:
        params = sum(p.numel() for p in state.module.parameters())
        with open(args.out, "w") as f:
            json.dump({"params": params, "ranks": every}, f)
    platform.shutdown()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden-size", type=int, default=256)
    ap.add_argument("--num-layers", type=int, default=8)
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--optimizer", default="adam", help=argparse.SUPPRESS)
    ap.add_argument("--sharded", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)
    rows = []
    shape = ["--hidden-size", str(args.hidden_size), "--num-layers", str(args.num_layers),
             "--vocab-size", str(args.vocab_size), "--steps", str(args.steps)]
    for optimizer in ("adam", "muon-nsgd"):
        for dp in (1, 2, 4):
            for sharded in (False, True):
                if dp == 1 and sharded:
                    continue
                res = run_worker(__file__, dp, ["--optimizer", optimizer, *shape, *(["--sharded"] if sharded else [])],
                                 timeout=1200)
                ranks = res["ranks"]
                rows.append({"optimizer": optimizer, "dp": dp, "sharded": sharded, "params": res["params"],
                             "state_bytes_max": max(r["state_bytes"] for r in ranks),
                             "state_bytes_min": min(r["state_bytes"] for r in ranks),
                             "iter_s": statistics.median(r["iter_s"] for r in ranks),
                             "opt_step_s": statistics.median(r["opt_step_s"] for r in ranks)})
                print(rows[-1], flush=True)
    base = {r["optimizer"]: r["state_bytes_max"] for r in rows if r["dp"] == 1}
    md = ["# Sharded optimizer state (--use-distributed-optimizer)", "",
          f"LLaMA3 h{args.hidden_size}, {args.num_layers} layers, vocab {args.vocab_size}, "
          f"{rows[0]['params'] / 1e6:.1f}M parameters, fp32 (the masters are the parameters), CPU/gloo, "
          f"{os.cpu_count()} cores shared by the DP ranks (times grow with DP here for that reason: compare sharded "
          "with unsharded at the same DP). Median of "
          f"{args.steps} iterations after 2 warm-up ones.", "",
          "| optimizer | DP | sharded | state MB, largest rank | smallest rank | largest x DP / unsharded | "
          "iteration s | optimizer step s |", "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        md.append(f"| {r['optimizer']} | {r['dp']} | {'yes' if r['sharded'] else 'no'} | "
                  f"{r['state_bytes_max'] / 1e6:.2f} | {r['state_bytes_min'] / 1e6:.2f} | "
                  f"{r['state_bytes_max'] * r['dp'] / base[r['optimizer']]:.2f} | {r['iter_s']:.3f} | "
                  f"{r['opt_step_s']:.4f} |")
    md += ["", "Target (issue 17): largest x DP / unsharded <= 1.1 at DP4. Muon-NSGD's pieces are whole tensors, so "
           "the rank that holds the embedding or the head holds more when one of them exceeds 1/DP of the model."]
    write(os.path.join(RESULTS, "distributed_optimizer"), {"meta": vars(args), "runs": rows}, "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
