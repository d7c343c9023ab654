"""Write the logits of a checkpoint (or a fresh init) on a fixed random batch, in any layout.

    torchrun --nproc_per_node 4 tools/dump_logits.py --out logits.pt --load CKPT \
        --model llama3 --preset tiny --mock-data --tensor-model-parallel-size 2 --pipeline-model-parallel-size 2

Takes the trainer's flags; the logits ([batch, seq, vocab], fp32, gathered over TP) are written by
one rank. Used to check that a checkpoint means the same model in every layout.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    from megatron_grow.train import _quiet, setup, user_errors_exit

    _quiet()
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--out", required=True)
    p.add_argument("--batch-seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=2)
    own, rest = p.parse_known_args()
    import torch
    from megatron.core import parallel_state as ps

    from megatron_grow import platform, training

    with user_errors_exit():
        cfg, state, _, dev = setup(rest, for_training=False)
    tokens = torch.randint(0, cfg.vocab_size, (own.batch_size, cfg.seq_length),
                           generator=torch.Generator().manual_seed(own.batch_seed))
    logits = training.forward_logits(cfg, state, tokens, dev)
    if logits is not None and ps.get_tensor_model_parallel_rank() == 0 and ps.get_data_parallel_rank() == 0:
        torch.save(logits.float().cpu()[..., : cfg.vocab_size], own.out)
    platform.shutdown()


if __name__ == "__main__":
    main()
