"""Measured peak memory per rank against megatron_grow/memory.py's estimate (tools/plan_memory.py),
and what activation recomputation and sequence parallelism save, side by side in one run.

    python benchmarks/memory_planner.py [--quick]

Each configuration is one torchrun job on CPU/gloo (fp32). On CPU there is no allocator counter, so
each rank measures its resident memory: glibc is told to serve every allocation above 64 KiB by mmap
(MALLOC_MMAP_THRESHOLD_), so freed tensors leave the process at once and the peak resident size
(ru_maxrss) follows the peak of live tensors. Per rank: RSS before the model is built (imports,
process group), the peak over 3 training iterations, and the persistent part after the first
iteration (weights, grads, optimizer state). measured = peak - before; estimate = the planner's
total for the rank's pipeline stage. Results: benchmarks/results/memory_planner.json / .md.
Target (issue 17): the planner within 10% of the measured peaks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.launch import RESULTS, run_worker, write  # noqa: E402

MB = 2**20
SHAPE = ["--hidden-size", "512", "--ffn-hidden-size", "1536", "--num-attention-heads", "8", "--num-query-groups", "4",
         "--num-layers", "4", "--seq-length", "1024", "--micro-batch-size", "2", "--vocab-size", "8192"]
FULL = ["--recompute-granularity", "full", "--recompute-method", "uniform", "--recompute-num-layers", "1"]
EMPTY = "empty model (0 layers, h64, vocab 128)"
CONFIGS = [  # (name, processes, flags); the first measures what a process adds beyond its tensors
    (EMPTY, 1, ["--model", "llama3", "--num-layers", "0", "--hidden-size", "64", "--ffn-hidden-size", "128",
                "--num-attention-heads", "1", "--num-query-groups", "1", "--vocab-size", "128"]),
    ("llama3", 1, ["--model", "llama3"]),
    ("llama3 selective core_attn,mlp", 1, ["--model", "llama3", "--recompute-granularity", "selective",
                                           "--recompute-modules", "core_attn,mlp"]),
    ("llama3 full uniform 1", 1, ["--model", "llama3", *FULL]),
    ("llama3 muon-nsgd", 1, ["--model", "llama3", "--optimizer", "muon-nsgd"]),
    ("gpt2", 1, ["--model", "gpt2"]),
    ("deepseek-v3 tiny", 1, ["--model", "deepseek-v3", "--hidden-size", "256", "--ffn-hidden-size", "768",
                             "--num-layers", "3", "--vocab-size", "8192"]),
    ("llama3 TP2", 2, ["--model", "llama3", "--tensor-model-parallel-size", "2"]),
    ("llama3 TP2 sequence parallel", 2, ["--model", "llama3", "--tensor-model-parallel-size", "2",
                                         "--sequence-parallel"]),
    ("llama3 PP2, 4 micro-batches", 2, ["--model", "llama3", "--pipeline-model-parallel-size", "2",
                                        "--global-batch-size", "8"]),
    ("llama3 DP2 distributed optimizer", 2, ["--model", "llama3", "--use-distributed-optimizer"]),
]
QUICK = {EMPTY, "llama3", "llama3 full uniform 1", "llama3 TP2 sequence parallel"}


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def live_tensor_bytes() -> int:
    """Bytes of every tensor Python can reach (each storage once): the persistent state without the
    process's other memory."""
    import gc

    import torch

    gc.collect()
    storages = {}
    for o in gc.get_objects():
        if isinstance(o, torch.Tensor) and o.device.type == "cpu":
            with contextlib.suppress(RuntimeError):  # (fake tensors of compiled MoE code have no data)
                storages[o.untyped_storage().data_ptr()] = o.untyped_storage().nbytes()
    return sum(storages.values())


def worker(args) -> None:
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    from megatron_grow import memory, platform, training
    from megatron_grow.train import _quiet, setup

    _quiet()
    before = rss()
    cfg, state, data, dev = setup([*args.flags, "--mock-data", "--device", "cpu", "--no-progress",
                                   "--train-iters", "10", "--eval-interval", "100"])
    batches = data.train_iterator(0)
    training.train_step(cfg, state, batches, dev)
    persistent = rss() - before
    live = live_tensor_bytes()
    for _ in range(2):
        training.train_step(cfg, state, batches, dev)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    est = memory.estimate(cfg)["stages"][ps.get_pipeline_model_parallel_rank()]
    mine = {"rank": dist.get_rank(), "stage": est["stage"], "measured": peak, "persistent": persistent,
            "live_tensors": live,
            "estimate": est["total"], "estimate_persistent": est["weights"] + est["grads"] + est["optimizer"],
            "estimate_activations": est["activations"] + est["backward"]}
    every = [None] * dist.get_world_size()
    dist.all_gather_object(every, mine)
    if dist.get_rank() == 0:
        with open(args.out, "w") as f:
            json.dump(every, f)
    platform.shutdown()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="three configurations (CI's smoke check)")
    ap.add_argument("--out-stem", default=os.path.join(RESULTS, "memory_planner"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args, rest = ap.parse_known_args(argv)
    if args.worker:
        args.flags = rest
        return worker(args)
    rows = []
    for name, nproc, flags in CONFIGS:
        if args.quick and name not in QUICK:
            continue
        ranks = run_worker(__file__, nproc, [*SHAPE, *flags], env={"MALLOC_MMAP_THRESHOLD_": "65536"})
        if name == EMPTY:  # the process's own growth (libraries loaded by setup, gloo, data): not tensors
            overhead = ranks[0]["measured"] - ranks[0]["estimate"]
            print(f"process overhead {overhead / MB:.0f} MB, subtracted from each measurement", flush=True)
            continue
        for r in ranks:
            r["measured"] -= overhead
            r["persistent"] -= overhead
        top = max(ranks, key=lambda r: r["measured"])
        rows.append({"config": name, "ranks": ranks, "measured": top["measured"], "estimate": top["estimate"],
                     "error": top["estimate"] / top["measured"] - 1,
                     "worst_rank_error": max(abs(r["estimate"] / r["measured"] - 1) for r in ranks),
                     "activations_measured": top["measured"] - top["persistent"],
                     "activations_estimate": top["estimate_activations"], "live_tensors": top["live_tensors"],
                     "persistent_estimate": top["estimate_persistent"]})
        print(f"{name}: measured {top['measured'] / MB:.0f} MB, estimate {top['estimate'] / MB:.0f} MB "
              f"({rows[-1]['error']:+.1%})", flush=True)
    md = ["# Memory planner against measured peaks (CPU, fp32)", "",
          "LLaMA3 h512 (8 heads, 4 KV groups), ffn 1536, 4 layers, seq 1024, micro-batch 2, vocab 8192 unless named; "
          "one torchrun job each; peak resident memory over 3 iterations minus the memory before the model was "
          f"built, less the process overhead ({overhead / MB:.0f} MB: what an empty model's run adds beyond its "
          "planned tensors: libraries loaded by setup, gloo, data), on the rank with the largest peak. "
          "'activations' = peak - memory after the first iteration (measured) and activations + backward peak "
          "(planned).", "",
          "| configuration | measured MB | planned MB | error | worst rank's error | activations measured MB | "
          "planned MB | live tensors after step 1 MB | planned weights + grads + optimizer MB |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        md.append(f"| {r['config']} | {r['measured'] / MB:.0f} | {r['estimate'] / MB:.0f} | {r['error']:+.1%} | "
                  f"{r['worst_rank_error']:.1%} | {r['activations_measured'] / MB:.0f} | "
                  f"{r['activations_estimate'] / MB:.0f} | {r['live_tensors'] / MB:.0f} | "
                  f"{r['persistent_estimate'] / MB:.0f} |")
    write(args.out_stem, {"shape": SHAPE, "process_overhead": overhead, "runs": rows}, "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
