"""The step after a function-preserving growth: does the train loss rise, and why?

    python benchmarks/growth_spike.py            # ~6 min on 2 cores (one process per run, two at a time)

The quickstart's model and flags (LLaMA3 tiny, the bundled corpus, AdamW LR 3e-3, WSD, 300 iterations,
one process with micro-batch 16: the quickstart's global batch), trained to iteration 240 once and saved;
then every variant loads that checkpoint, grows 1 -> 4 layers at 240 (or does not grow: the reference)
and trains to 300 on the same batches. Per variant: the train loss minus the never-grown run's on the
same batch (so batch noise cancels), its largest rise and its mean over windows after growth, the
gradient norm of the first steps, and the held-out loss at 300.

What it shows (docs/growth.md, "The step after growth"): with the new layers *under* the trained block
(``--grow-placement bottom``) their output projections write into the residual stream where it is the
raw embeddings, small next to a trained block's outputs; a zero-output layer's first updates are of
ordinary size, so they move the trained block's normalised input a long way, and the loss jumps. With
the new layers above it (``top``, or ``stack``: the trained block first) the stream they write into is
the trained block's output, and the loss does not rise.

Results: benchmarks/results/growth_spike.json / .md.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.launch import RESULTS, train, write  # noqa: E402

TAU, T = 240, 300
BASE = ["--model", "llama3", "--preset", "tiny", "--data-path", "demo", "--micro-batch-size", "16",
        "--global-batch-size", "16", "--train-iters", str(T), "--lr", "3e-3", "--lr-decay-style", "wsd",
        "--eval-interval", "100", "--eval-iters", "4", "--device", "cpu", "--num-layers", "1"]
GROW = ["--grow-to-layers", "4", "--grow-at-iter", str(TAU)]
VARIANTS = {  # name -> flags after the checkpoint at TAU (None: no growth, the reference)
    "never grown (1 layer)": None,
    "copy_zeroL, bottom (the default placement)": [*GROW, "--grow-init", "copy_zeroL"],
    "copy_zeroL, bottom, moments reset": [*GROW, "--grow-init", "copy_zeroL", "--grow-optimizer-state", "reset"],
    "copy_zeroL, bottom, new layers' LR re-warmed over 20": [*GROW, "--grow-init", "copy_zeroL",
                                                             "--grow-new-layer-lr-mult", "0",
                                                             "--grow-new-layer-lr-iters", "20"],
    "zero (random, zeroed projections), bottom": [*GROW, "--grow-init", "zero"],
    "copy (not function-preserving), bottom": [*GROW, "--grow-init", "copy"],
    "copy_zeroL, top": [*GROW, "--grow-init", "copy_zeroL", "--grow-placement", "top"],
    "copy_zeroL, stack": [*GROW, "--grow-init", "copy_zeroL", "--grow-placement", "stack"],
}
WINDOWS = ((TAU + 1, TAU + 10), (TAU + 11, TAU + 30), (TAU + 31, T))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(RESULTS, "growth_spike"))
    args = ap.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = "1"
    with tempfile.TemporaryDirectory(prefix="growth_spike_") as work:
        ck = os.path.join(work, "ck")
        train([*BASE, "--save", ck, "--save-interval", str(TAU), "--exit-interval", str(TAU)],
              os.path.join(work, "base.jsonl"))

        def one(item):
            name, flags = item
            res = train([*BASE, *(flags or []), "--load", ck, "--ckpt-step", str(TAU)],
                        os.path.join(work, f"{len(name)}-{abs(hash(name))}.jsonl"))
            return name, res["records"]

        with cf.ThreadPoolExecutor(args.jobs) as pool:
            recs = dict(pool.map(one, VARIANTS.items()))
    loss = {n: {r["iter"]: r["lm_loss"] for r in rs if "lm_loss" in r} for n, rs in recs.items()}
    ref_name = next(iter(VARIANTS))
    ref = loss[ref_name]
    rows = []
    for name, rs in recs.items():
        d = {i: loss[name][i] - ref[i] for i in range(TAU + 1, T + 1)}
        worst = max(d, key=d.get)
        grad = {r["iter"]: r["grad_norm"] for r in rs if "grad_norm" in r}
        rows.append({"variant": name, "max_rise": d[worst], "max_rise_iter": worst,
                     "mean_diff": [sum(d[i] for i in range(a, b + 1)) / (b - a + 1) for a, b in WINDOWS],
                     "grad_norm": [grad[i] for i in range(TAU + 1, TAU + 4)],
                     "val_loss": [r["val_loss"] for r in rs if "val_loss" in r][-1]})
    lines = [f"1 -> 4 layers at iteration {TAU} of {T} (the quickstart's model, one process, micro-batch 16), every "
             "variant from the same checkpoint on the same batches. Train loss minus the never-grown run's on the "
             "same batch.", "",
             "| variant | largest rise (iter) | mean diff " + " | mean diff ".join(f"{a}-{b}" for a, b in WINDOWS)
             + f" | grad norm {TAU + 1}-{TAU + 3} | held-out at {T} |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['max_rise']:+.3f} ({r['max_rise_iter']}) | "
                     + " | ".join(f"{x:+.3f}" for x in r["mean_diff"])
                     + f" | {', '.join(f'{g:.1f}' for g in r['grad_norm'])} | {r['val_loss']:.4f} |")
    table = "\n".join(lines) + "\n"
    write(args.out, {"tau": TAU, "T": T, "flags": BASE, "rows": rows}, table)
    print(table)


if __name__ == "__main__":
    main()
