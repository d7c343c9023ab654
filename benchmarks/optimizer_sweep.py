"""AdamW vs Muon-NSGD (both update-scale modes) over a learning-rate grid, side by side in one run;
then Muon-NSGD's step time with and without DP spread (--muon-dp-spread on/off, DP2).

    python benchmarks/optimizer_sweep.py                 # ~2 minutes on 2 CPU cores
    python benchmarks/optimizer_sweep.py --train-iters 300 --model-args "--hidden-size 128"

Every run: the same model, data order, schedule (WSD) and number of steps on the bundled demo
corpus; only the optimizer and its LR change. Reports the final held-out loss of each run and the
best LR of each optimizer, and the median step time of DP-spread vs repeated Newton-Schulz (mock
data, widths 128 and 512; the losses must agree exactly). Writes results/optimizer_sweep.json/.md.
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


def dp_spread(out: str) -> list[dict]:
    """Step time of Muon-NSGD at DP2 with each matrix orthogonalised once (spread) or on every rank."""
    import statistics

    rows = []
    for h in (128, 512):
        for spread in ("on", "off"):
            args = ["--model", "llama3", "--preset", "tiny", "--hidden-size", str(h), "--ffn-hidden-size", str(3 * h),
                    "--num-layers", "2", "--seq-length", "64", "--device", "cpu", "--mock-data", "--vocab-size",
                    "1000", "--micro-batch-size", "4", "--global-batch-size", "8", "--train-iters", "12",
                    "--eval-interval", "100", "--optimizer", "muon-nsgd", "--lr", "1e-2", "--muon-dp-spread", spread]
            recs = train(args, os.path.join(out + "_runs", f"spread_{h}_{spread}.jsonl"), 2)["records"]
            times = [r["step_time_s"] for r in recs if "step_time_s" in r][2:]  # after warm-up
            rows.append({"hidden": h, "spread": spread, "step_ms": 1e3 * statistics.median(times),
                         "loss": last(recs, "lm_loss")})
            print(f"DP spread {spread:3s} hidden {h}: {rows[-1]['step_ms']:.1f} ms/step", flush=True)
        a, b = rows[-2:]
        if a["loss"] != b["loss"]:
            raise AssertionError(f"DP spread changed the losses: {a['loss']} vs {b['loss']}")
    return rows


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
    lines += ["", "Best of each:", ""] + [f"- {k}: lr {r['lr']:g}, val loss {r['val_loss']:.4f}"
                                          for k, r in best.items()]
    spread = dp_spread(args.out)
    lines += ["", "## DP spread (Muon-NSGD, DP2, mock data, 12 iterations)", "",
              "| hidden | spread | median step ms | final loss |", "|---:|---|---:|---:|"]
    lines += [f"| {r['hidden']} | {r['spread']} | {r['step_ms']:.1f} | {r['loss']:.6f} |" for r in spread]
    table = "\n".join(lines) + "\n"
    write(args.out, {"train_flags": base, "nproc": args.nproc, "runs": rows,
                     "best": {k: r for k, r in best.items()}, "dp_spread": spread}, table)
    print("\n" + table)


if __name__ == "__main__":
    main()
