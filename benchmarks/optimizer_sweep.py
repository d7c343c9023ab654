"""AdamW vs Muon-NSGD (both update-scale modes) over a learning-rate grid, side by side in one run.

    python benchmarks/optimizer_sweep.py                 # ~2 minutes on 2 CPU cores
    python benchmarks/optimizer_sweep.py --train-iters 300 --model-args "--hidden-size 128"

Every run: the same model, data order, schedule (WSD) and number of steps on the bundled demo
corpus; only the optimizer and its LR change. Reports the final held-out loss of each run and the
best LR of each optimizer. Writes results/optimizer_sweep.json and .md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.launch import RESULTS, last, train, write  # noqa: E402

MODEL = ("--model llama3 --preset tiny --hidden-size 64 --ffn-hidden-size 192 --num-layers 2 --seq-length 64 "
         "--device cpu --data-path demo --micro-batch-size 8 --global-batch-size 16 --eval-iters 4")
GRID = {
    ("adam", "-"): (1e-3, 3e-3, 5e-3, 1e-2),
    ("muon-nsgd", "match_adamw"): (3e-3, 1e-2, 3e-2),
    ("muon-nsgd", "spectral"): (0.05, 0.1, 0.2, 0.5),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-iters", type=int, default=80)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--model-args", default="", help="extra trainer flags, appended to the default model")
    ap.add_argument("--out", default=os.path.join(RESULTS, "optimizer_sweep"))
    args = ap.parse_args(argv)
    base = [*shlex.split(MODEL), *shlex.split(args.model_args), "--train-iters", str(args.train_iters),
            "--eval-interval", str(args.train_iters)]
    rows = []
    for (opt, mode), lrs in GRID.items():
        for lr in lrs:
            extra = ["--optimizer", opt, "--lr", str(lr)] + (["--muon-scale-mode", mode] if mode != "-" else [])
            res = train([*base, *extra], os.path.join(args.out + "_runs", f"{opt}_{mode}_{lr}.jsonl"), args.nproc)
            row = {"optimizer": opt, "scale_mode": mode, "lr": lr, "val_loss": last(res["records"], "val_loss"),
                   "train_loss": last(res["records"], "lm_loss"), "wall_s": res["wall_s"]}
            rows.append(row)
            print(f"{opt:10s} {mode:12s} lr {lr:<8g} val {row['val_loss']:.4f} ({row['wall_s']:.0f}s)", flush=True)
    best = {}
    for r in rows:
        key = f"{r['optimizer']} {r['scale_mode']}".replace(" -", "")
        if key not in best or r["val_loss"] < best[key]["val_loss"]:
            best[key] = r
    lines = ["# AdamW vs Muon-NSGD: learning-rate sweep on the demo corpus", "",
             f"Trainer flags: `{' '.join(base)}`; {args.nproc} processes. Final held-out loss after "
             f"{args.train_iters} iterations (WSD schedule, same data order for every run).", "",
             "| optimizer | update scale | lr | val loss | train loss |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r['optimizer']} | {r['scale_mode']} | {r['lr']:g} | {r['val_loss']:.4f} | {r['train_loss']:.4f} |"
              for r in rows]
    lines += ["", "Best of each:", ""] + [f"- {k}: lr {r['lr']:g}, val loss {r['val_loss']:.4f}" for k, r in best.items()]
    table = "\n".join(lines) + "\n"
    write(args.out, {"train_flags": base, "nproc": args.nproc, "runs": rows,
                     "best": {k: r for k, r in best.items()}}, table)
    print("\n" + table)


if __name__ == "__main__":
    main()
