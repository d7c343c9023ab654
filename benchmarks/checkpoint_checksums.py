"""What the per-file checksums of a checkpoint cost, measured beside the save and load they protect.

    python benchmarks/checkpoint_checksums.py [--hidden-size 512 --num-layers 8 --repeats 3 --steps 4]

One process (CPU, or the GPU when there is one): a LLaMA3 model with AdamW state, built by the
trainer's own setup on mock data, is saved with megatron_grow.checkpointing.save, which returns once
the checkpoint is committed and leaves the checksums (checksums.<rank>.json, XXH3-64 per 64 MiB) to a background thread.
Measured per save:
- the save as training waits for it;
- the checksum step's own work (write_checksums again, in the foreground, on the same files);
- what training loses to the thread: ``--steps`` training steps timed right after save() returned
  (the thread running beside them) against the same steps after a save without checksums (their
  thread replaced by nothing), plus any checksum work still left when the steps end;
- verify_checksums beside a full load (the load waits for it).
Results: benchmarks/results/checkpoint_checksums.json / .md. The target (issue 14) is under 5% of
the save time.
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
    ap.add_argument("--steps", type=int, default=4, help="training steps timed after each save, twice")
    args = ap.parse_args(argv)

    import statistics

    import torch

    from megatron_grow import checkpointing, platform, runstate, training
    from megatron_grow.train import _quiet, setup

    _quiet()
    h = args.hidden_size
    cfg, state, data, dev = setup([
        "--model", "llama3", "--preset", "tiny", "--hidden-size", str(h), "--ffn-hidden-size", str(4 * h),
        "--num-attention-heads", str(h // 64), "--num-layers", str(args.num_layers), "--mock-data",
        "--vocab-size", "32000", "--optimizer", "adam", "--seq-length", "128", "--micro-batch-size", "2",
        "--train-iters", str(args.steps * (2 * args.repeats + 1) + 1), "--no-progress"])
    batches = data.train_iterator(0)

    def steps() -> float:
        t0 = time.perf_counter()
        for _ in range(args.steps):
            training.train_step(cfg, state, batches, dev)
        return time.perf_counter() - t0

    steps()  # warm-up
    root = tempfile.mkdtemp(prefix="ckpt_checksums_")
    rows = []
    try:
        real_checksums = checkpointing.write_checksums
        it = 1  # a first save, unmeasured, starts megatron's writer and its helper process
        first = checkpointing.save(root, it, state.module, state.optimizer, state.scheduler,
                                   runstate.common_state(cfg, state))
        checkpointing.wait_for_checksums()
        shutil.rmtree(first)
        for rep in range(args.repeats):
            timed = {}
            for with_sums in (True, False)[::1 if rep % 2 else -1]:  # with the checksum thread and without,
                # the same save and steps, in alternating order (the first of a pair tends to be slower)
                checkpointing.write_checksums = real_checksums if with_sums else (lambda *a, **kw: None)
                it += 1
                t0 = time.perf_counter()
                path = checkpointing.save(root, it, state.module, state.optimizer, state.scheduler,
                                          runstate.common_state(cfg, state))
                save_s = time.perf_counter() - t0  # what training waits for: the checksums run in a thread
                busy_s = steps()
                t0 = time.perf_counter()
                checkpointing.wait_for_checksums()
                timed[with_sums] = (save_s, busy_s, time.perf_counter() - t0)  # (left: not covered by the steps)
                if with_sums:
                    kept = (it, path)
                else:
                    shutil.rmtree(path)
            checkpointing.write_checksums = real_checksums
            kept_it, path = kept
            (save_s, busy_s, left_s), (save0_s, quiet_s, _) = timed[True], timed[False]
            t0 = time.perf_counter()
            checkpointing.write_checksums(path)  # the whole checksum step again, in the foreground
            sum_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            assert checkpointing.verify_checksums(path) is None
            verify_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            checkpointing.load(root, state.module, state.optimizer, state.scheduler, kept_it, cfg.layout)
            load_s = time.perf_counter() - t0
            size = sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))
            lost = busy_s - quiet_s + left_s
            rows.append({"bytes": size, "save_s": save_s, "save_without_checksums_s": save0_s, "checksum_s": sum_s,
                         "steps_after_save_s": busy_s, "steps_after_save_without_checksums_s": quiet_s,
                         "checksum_left_after_steps_s": left_s, "training_lost_s": lost, "verify_s": verify_s,
                         "load_s": load_s, "checksum_share_of_save": sum_s / save_s,
                         "training_lost_share_of_save": lost / save_s, "verify_share_of_load": verify_s / load_s})
            shutil.rmtree(path)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        platform.shutdown()
    lost_med = statistics.median(r["training_lost_share_of_save"] for r in rows)
    work_med = statistics.median(r["checksum_share_of_save"] for r in rows)
    meta = {"device": str(dev), "hidden_size": h, "num_layers": args.num_layers, "steps": args.steps,
            "params": sum(p.numel() for p in state.module.parameters()), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count()}
    md = ["# Checkpoint checksum cost", "",
          f"LLaMA3, hidden {h}, {args.num_layers} layers, {meta['params'] / 1e6:.1f}M parameters, AdamW state, fp32, "
          f"1 process on {dev} ({meta['cpus']} CPUs, {meta['torch_threads']} torch threads); {args.repeats} saves, "
          f"each row a pair of saves, one with checksums and one without, each followed by {args.steps} timed training "
          "steps (training lost = the difference of those steps, plus any checksum work still left after them).", "",
          "| checkpoint MB | save s (training waits) | without checksums | checksum work s | work / save | steps after "
          "save s | without checksums | training lost s | lost / save | load s | verify s | verify / load |",
          "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        md.append(f"| {r['bytes'] / 1e6:.0f} | {r['save_s']:.2f} | {r['save_without_checksums_s']:.2f} | "
                  f"{r['checksum_s']:.3f} | {100 * r['checksum_share_of_save']:.1f}% | {r['steps_after_save_s']:.2f} | "
                  f"{r['steps_after_save_without_checksums_s']:.2f} | {r['training_lost_s']:+.3f} | "
                  f"{100 * r['training_lost_share_of_save']:+.1f}% | {r['load_s']:.2f} | {r['verify_s']:.3f} | "
                  f"{100 * r['verify_share_of_load']:.1f}% |")
    md += ["", f"Median: training lost {100 * lost_med:+.1f}% of the save's time to the checksums (target: under 5%); "
           f"their own work is {100 * work_med:.1f}% of it, done in a thread beside training. Training loses time "
           "only where that thread competes for a core the steps use. The load waits for verify_checksums "
           "(rank 0 reads every file once more)."]
    write(os.path.join(RESULTS, "checkpoint_checksums"), {"meta": meta, "runs": rows}, "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
