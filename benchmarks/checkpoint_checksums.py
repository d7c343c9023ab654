"""What the per-file checksums of a checkpoint cost, measured beside the save and load they protect.

    python benchmarks/checkpoint_checksums.py [--hidden-size 512 --num-layers 8 --repeats 3]

One process (CPU, or the GPU when there is one): a LLaMA3 model with AdamW state is saved with
megatron_grow.checkpointing.save, which returns once the checkpoint is committed and leaves the
checksums (checksums.<rank>.json) to a background thread. Measured per save: the save as training
waits for it, the checksum step alone (write_checksums in the foreground on the same files), and
verify_checksums beside a full load. Results: benchmarks/results/checkpoint_checksums.json / .md.
The target (issue 14) is under 5% of the save time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.launch import RESULTS, write  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden-size", type=int, default=512)
    ap.add_argument("--num-layers", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    import torch

    from megatron_grow import checkpointing, config, platform, training
    from megatron_grow.train import _quiet

    _quiet()
    device = platform.resolve_device("auto")
    cfg = config.finalize(config.parse_args([
        "--model", "llama3", "--preset", "tiny", "--hidden-size", str(args.hidden_size),
        "--ffn-hidden-size", str(4 * args.hidden_size), "--num-attention-heads", str(args.hidden_size // 64),
        "--num-layers", str(args.num_layers), "--mock-data", "--vocab-size", "32000", "--optimizer", "adam"]),
        1, device)
    _, _, dev = platform.init_distributed(device)
    platform.init_model_parallel(1, 1, cfg.seed)
    state = training.build_state(cfg, dev)
    root = tempfile.mkdtemp(prefix="ckpt_checksums_")
    rows = []
    try:
        for k in range(args.repeats):
            t0 = time.perf_counter()
            path = checkpointing.save(root, k + 1, state.model.module, state.optimizer, state.scheduler,
                                      training.common_state(cfg, state))
            save_s = time.perf_counter() - t0  # what training waits for: the checksums run in a thread
            t0 = time.perf_counter()
            checkpointing.wait_for_checksums()
            left_s = time.perf_counter() - t0  # the thread's work still to do when save() returned
            t0 = time.perf_counter()
            checkpointing.write_checksums(path)  # the whole checksum step again, in the foreground
            sum_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            assert checkpointing.verify_checksums(path) is None
            verify_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            checkpointing.load(root, state.model.module, state.optimizer, state.scheduler, k + 1)
            load_s = time.perf_counter() - t0
            size = sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))
            rows.append({"bytes": size, "save_s": save_s, "checksum_s": sum_s, "checksum_left_after_save_s": left_s, "verify_s": verify_s, "load_s": load_s,
                         "checksum_share_of_save": sum_s / save_s, "verify_share_of_load": verify_s / load_s})
            shutil.rmtree(path)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        platform.shutdown()
    best = min(rows, key=lambda r: r["save_s"])
    meta = {"device": str(dev), "hidden_size": args.hidden_size, "num_layers": args.num_layers,
            "params": sum(p.numel() for p in state.model.module.parameters()), "torch": torch.__version__}
    md = ["# Checkpoint checksum cost", "",
          f"LLaMA3, hidden {args.hidden_size}, {args.num_layers} layers, {meta['params'] / 1e6:.1f}M parameters, AdamW "
          f"state, fp32, 1 process on {dev}; {args.repeats} saves, each row one save.", "",
          "| checkpoint MB | save s (training waits) | checksums s (background) | share of save | load s | verify s | "
          "share of load |",
          "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        md.append(f"| {r['bytes'] / 1e6:.0f} | {r['save_s']:.2f} | {r['checksum_s']:.3f} | "
                  f"{100 * r['checksum_share_of_save']:.1f}% | {r['load_s']:.2f} | {r['verify_s']:.3f} | "
                  f"{100 * r['verify_share_of_load']:.1f}% |")
    md += ["", f"Fastest save: the checksums take {100 * best['checksum_share_of_save']:.1f}% of its time (target: "
           "under 5%), in a thread that training does not wait for; on a CPU-bound run they compete with it for "
           "cores. The load waits for verify_checksums (rank 0 reads every file once more)."]
    write(os.path.join(RESULTS, "checkpoint_checksums"), {"meta": meta, "runs": rows}, "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
