"""Per-GPU memory of a training configuration before and after growth, and the largest micro-batch
that fits, from the trainer's own flags (nothing is built, no GPU needed).

    # LLaMA3-8B shape, 1 layer grown to 32 at TP4 x PP2 on 8 H100s (80 GB), bf16, distributed optimizer
    python tools/plan_memory.py --world-size 8 --gpu-memory-gib 80 --model llama3 --preset 8b --num-layers 1 \\
        --grow-to-layers 32 --grow-at-fraction 0.8 --grow-tensor-model-parallel-size 4 \\
        --grow-pipeline-model-parallel-size 2 --micro-batch-size 1 --global-batch-size 512 \\
        --use-distributed-optimizer --recompute-granularity selective

Terms and what they leave out: megatron_grow/memory.py. The trainer runs the same estimate at launch
and warns when the grown layout will not fit the GPU.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from megatron_grow import config, memory  # noqa: E402
from megatron_grow.finalize import finalize  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                usage="%(prog)s --world-size N [--gpu-memory-gib G] TRAINER FLAGS...")
    p.add_argument("--world-size", type=int, required=True, help="GPUs (processes) of the run")
    p.add_argument("--gpu-memory-gib", type=float, help="memory of one GPU: report fit and the largest micro-batch")
    p.add_argument("--reserve-gib", type=float, default=memory.RESERVE_GIB,
                   help="kept free for the CUDA context, NCCL and fragmentation (default %(default)s)")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cuda: bf16 by default, as on GPUs")
    args, flags = p.parse_known_args(argv)
    if "--mock-data" not in flags and "--data-path" not in flags:
        flags = [*flags, "--mock-data"]  # (the data does not change the memory)
    try:
        cfg = finalize(config.parse_args(flags), args.world_size, args.device)
    except config.ConfigError as e:
        print(e, file=sys.stderr)
        return 1
    capacity = args.gpu_memory_gib and (args.gpu_memory_gib - args.reserve_gib) * memory.GIB
    for when, c in memory.phases(cfg):
        est = memory.estimate(c)
        print(f"{c.model}/{c.preset} {c.num_layers} layers, TP{c.tensor_model_parallel_size} "
              f"PP{c.pipeline_model_parallel_size} DP{c.data_parallel_size}, micro-batch {c.micro_batch_size} x "
              f"{c.seq_length}, {'bf16' if c.bf16 else 'fp32'}, {c.optimizer}"
              f"{' (distributed)' if c.use_distributed_optimizer else ''}{when}: "
              f"peak {memory.gib(est['peak'])} per GPU (stage {est['peak_stage']})")
        print(memory.describe(c, est))
        if capacity:
            fits = "fits" if est["peak"] <= capacity else "DOES NOT FIT"
            best = memory.largest_micro_batch(c, capacity)
            print(f"  {fits} in {args.gpu_memory_gib:g} GiB less {args.reserve_gib:g} reserved; largest micro-batch "
                  f"that fits: {best or 'none (shard more: TP/PP, --use-distributed-optimizer, recomputation)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
