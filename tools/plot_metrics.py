"""Plot one or more runs' metrics files: train and held-out loss against iterations and against the
exact model FLOPs of the ledger, growth events marked.

    python tools/plot_metrics.py runs/a/metrics.jsonl runs/b/metrics.jsonl [--out losses.png] [--labels a,b]

Writes a PNG (default: beside the first file, as metrics.png). Needs matplotlib (the dev extra).
"""

import argparse
import json
import os
import sys


def read(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def curves(recs: list[dict]) -> dict:
    """x (iteration, cumulative FLOPs) and y for train and held-out loss, and the growth events.
    An eval line carries no FLOPs: it takes those of the last training line before it."""
    out = {"train": ([], [], []), "val": ([], [], []), "grow": []}
    flops = 0
    for r in recs:
        flops = r.get("cum_flops", flops)
        if r.get("lm_loss") is not None:
            out["train"][0].append(r["iter"]), out["train"][1].append(flops), out["train"][2].append(r["lm_loss"])
        if r.get("val_loss") is not None:
            out["val"][0].append(r["iter"]), out["val"][1].append(flops), out["val"][2].append(r["val_loss"])
        if r.get("event") == "grow":
            out["grow"].append((r["iter"], flops, f"{r['from_layers']}->{r['to_layers']} layers"))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", metavar="METRICS.jsonl")
    p.add_argument("--out", help="PNG to write (default: metrics.png beside the first file)")
    p.add_argument("--labels", help="comma-separated, one per file (default: the files' directory names)")
    args = p.parse_args(argv)
    missing = [f for f in args.files if not os.path.isfile(f)]
    if missing:
        sys.exit(f"error: no such metrics file: {', '.join(missing)}")
    labels = args.labels.split(",") if args.labels else [os.path.basename(os.path.dirname(os.path.abspath(f)))
                                                          for f in args.files]
    if len(labels) != len(args.files):
        sys.exit(f"error: --labels has {len(labels)} names for {len(args.files)} files")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("error: plotting needs matplotlib: pip install matplotlib (or pip install -e .[dev])")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for path, label in zip(args.files, labels, strict=True):
        c = curves(read(path))
        for ax, x in zip(axes, (0, 1), strict=True):
            line, = ax.plot(c["train"][x], c["train"][2], alpha=0.35, lw=1)
            ax.plot(c["val"][x], c["val"][2], "o-", color=line.get_color(), ms=3, label=f"{label} held-out")
            for g in c["grow"]:
                ax.axvline(g[x], color=line.get_color(), ls="--", lw=1)
                ax.annotate(f"{label}: {g[2]}", (g[x], ax.get_ylim()[1]), rotation=90, va="top", fontsize=7)
    axes[0].set_xlabel("iteration")
    axes[1].set_xlabel("training FLOPs (exact model FLOPs, cumulative)")
    for ax in axes:
        ax.set_ylabel("loss (faint: train, dots: held-out)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.files[0])), "metrics.png")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
