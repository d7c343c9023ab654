"""Progressive (0/1 layer -> L at tau) vs fixed-size L-layer training, measured side by side.

    python benchmarks/progressive_vs_fixed.py                   # CPU default, ~30 min on 2 cores
    python benchmarks/progressive_vs_fixed.py --scale cpu-wide  # width 128, 4096-token vocab, ~50 min
    python benchmarks/progressive_vs_fixed.py --scale gpu-124m  # GPT2-124M shape on one GPU
    python benchmarks/progressive_vs_fixed.py --scale gpu-1b --nproc 8 --data-path DATA --tokenizer-model TOK
    python benchmarks/progressive_vs_fixed.py --dry-run         # the runs and the expected time, nothing run

Every run trains on the same data (the bundled demo corpus unless --data-path) in the same order,
for the same number of iterations and tokens, with the same optimizer, LR and schedule; only the
depth before tau differs. Runs:

  fixed          L layers throughout, WSD                (the reference)
  p0-random-0.8  0 layers, grown to L at 0.8 T, random   (the paper's 0-layer recipe)
  p0-random-0.5  ... at 0.5 T
  p1-random-0.8, p1-copy-0.8, p1-random-0.5, p1-copy-0.5   1 layer -> L, random or copy init
  p1-copy_zeroL-0.8, p1-copy_zeroL-0.5                      copies with zeroed output projections
  shallow-1      1 layer throughout (does depth matter at this budget at all?)
  fixed-0.4T     L layers for 0.4 T iterations, its own full WSD schedule: the fixed-size run
                 that costs what a progressive run at 0.8 T costs (is growing worth it at equal compute?)
  fixed-cos, p1-copy-0.8-cos, p0-random-0.8-cos             the cosine control (gaps vs fixed-cos)

The CPU default is sized like the paper's runs in tokens per parameter (~50: a width-32 GPT2 on
the demo corpus tokenized with a 512-token vocabulary, 6M tokens), so that depth matters (a
1-layer model ends ~24% above the 8-layer one); ``cpu-wide`` is a width-128 model at under one
token per parameter, where depth is worth only ~4%.

Reported per run: final held-out loss (the same fixed validation batches for every run), gap to
the fixed-size run of the same schedule, compute relative to it in the three FLOPs conventions of
megatron_grow/flops.py (exact matmul FLOPs; 6 N tokens with all parameters; with non-embedding
parameters), training wall-time ratio (the runs' own step and growth time), and t_mix: iterations
after tau until the train loss (moving average of 10) stays within 1% of the fixed run's
(megatron_grow/growth/tau.py, the planner's own definition). Writes <out>.json, <out>.md and
<out>.png (held-out loss vs exact FLOPs and vs iterations) into benchmarks/results.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.launch import RESULTS, read_metrics, train, write  # noqa: E402

# Each scale: trainer flags of the L-layer model and run, and an assumed sustained throughput (FLOP/s
# for the whole job) for the time estimate printed up front.
SCALES = {
    "cpu": dict(  # width 32, 8 layers, demo corpus with a 512-token vocabulary: ~50 tokens per parameter
        flags=["--model", "gpt2", "--preset", "tiny", "--hidden-size", "32", "--ffn-hidden-size", "128",
               "--num-attention-heads", "2", "--seq-length", "128", "--device", "cpu", "--micro-batch-size", "8",
               "--global-batch-size", "16", "--lr", "1e-2", "--eval-interval", "150", "--eval-iters", "16"],
        layers=8, train_iters=3000, nproc=2, flops_per_s=28e9, overhead_s=15, demo_vocab=512),
    "cpu-wide": dict(  # width 128, 4096-token vocabulary: under one token per parameter
        flags=["--model", "gpt2", "--preset", "tiny", "--hidden-size", "128", "--ffn-hidden-size", "512",
               "--num-attention-heads", "4", "--seq-length", "128", "--device", "cpu", "--micro-batch-size", "8",
               "--global-batch-size", "16", "--lr", "4e-3", "--eval-interval", "50", "--eval-iters", "8"],
        layers=8, train_iters=800, nproc=2, flops_per_s=68e9, overhead_s=15),
    "gpu-124m": dict(  # GPT2-124M shape (12 layers, h768, 12 heads, seq 1024), bf16 on one GPU
        flags=["--model", "gpt2", "--preset", "124m", "--device", "cuda", "--micro-batch-size", "16",
               "--global-batch-size", "64", "--lr", "2e-3", "--eval-interval", "200", "--eval-iters", "10"],
        layers=12, train_iters=4000, nproc=1, flops_per_s=250e12, overhead_s=60),
    "gpu-1b": dict(  # LLaMA3-1B shape (16 layers, h2048, 32 heads / 8 KV groups), seq 2048
        flags=["--model", "llama3", "--preset", "1b", "--seq-length", "2048", "--device", "cuda",
               "--micro-batch-size", "4", "--global-batch-size", "64", "--lr", "1e-3", "--eval-interval", "200",
               "--eval-iters", "10"],
        layers=16, train_iters=4000, nproc=1, flops_per_s=300e12, overhead_s=120),
}


@dataclasses.dataclass
class Run:
    name: str
    source: int | None  # None: fixed-size (L layers throughout)
    tau: float | None = None
    init: str = "random"
    schedule: str = "wsd"
    length: float = 1.0  # train_iters as a fraction of T (a shorter fixed-size run)

    def iters(self, T: int) -> int:
        return round(self.length * T)

    def flags(self, layers: int, T: int) -> list[str]:
        out = ["--lr-decay-style", self.schedule, "--train-iters", str(self.iters(T))]
        if self.source is None:
            return out + ["--num-layers", str(layers)]
        out += ["--num-layers", str(self.source)]
        if self.tau is not None:
            out += ["--grow-at-iter", str(round(self.tau * T)), "--grow-to-layers", str(layers),
                    "--grow-init", self.init]
        return out

    @property
    def reference(self) -> str:
        return "fixed-cos" if self.schedule == "cosine" else "fixed"


RUNS = [
    Run("fixed", None), Run("p0-random-0.8", 0, 0.8), Run("p0-random-0.5", 0, 0.5),
    Run("p1-random-0.8", 1, 0.8), Run("p1-copy-0.8", 1, 0.8, "copy"),
    Run("p1-random-0.5", 1, 0.5), Run("p1-copy-0.5", 1, 0.5, "copy"),
    Run("p1-copy_zeroL-0.8", 1, 0.8, "copy_zeroL"), Run("p1-copy_zeroL-0.5", 1, 0.5, "copy_zeroL"),
    Run("shallow-1", 1), Run("fixed-0.4T", None, length=0.4),
    Run("fixed-cos", None, schedule="cosine"), Run("p1-copy-0.8-cos", 1, 0.8, "copy", "cosine"),
    Run("p0-random-0.8-cos", 0, 0.8, schedule="cosine"),
]


def _cfg(flags: list[str], extra: list[str], vocab: int):
    from megatron_grow import config
    from megatron_grow.models import apply_preset

    cfg = config.parse_args([*flags, *extra, "--mock-data", "--vocab-size", str(vocab)])
    apply_preset(cfg)
    return cfg


def expected_seconds(run: Run, scale: dict, T: int, flags: list[str]) -> float:
    """FLOPs of the run (the trainer's exact count, plus Muon's Newton-Schulz) over the assumed rate."""
    from megatron_grow import flops

    def per_iter(layers):
        cfg = _cfg(flags, ["--num-layers", str(layers)], scale.get("demo_vocab", 4096))
        tokens = cfg.global_batch_size * cfg.seq_length
        h, f, kv = cfg.hidden_size, cfg.ffn_hidden_size, cfg.kv_channels or cfg.hidden_size // cfg.num_attention_heads
        qkv = (cfg.num_attention_heads + 2 * (cfg.num_query_groups or cfg.num_attention_heads)) * kv
        gated = flops.FAMILIES[cfg.model]["gated_linear_unit"]
        mats = [(qkv, h), (h, h), (f * (2 if gated else 1), h), (h, f)]
        ns = layers * sum(5 * (4 * min(m, n) ** 2 * max(m, n) + 2 * min(m, n) ** 3) for m, n in mats)
        return flops.train_flops(cfg, tokens) + (ns if "muon-nsgd" in flags else 0)

    L = scale["layers"]
    if run.source is None:
        total = run.iters(T) * per_iter(L)
    elif run.tau is None:
        total = T * per_iter(run.source)
    else:
        tau = round(run.tau * T)
        total = tau * per_iter(run.source) + (T - tau) * per_iter(L)
    return total / scale["flops_per_s"] + scale["overhead_s"]


def epochs_note(data: str, T: int, cfg) -> str:
    """How many passes over the data a full-length run makes (a GPU scale on the small demo corpus
    would repeat it many times: pass --data-path)."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    if not IndexedDataset.exists(data):
        return f"data: {data} (not found)"
    dataset = IndexedDataset(data)  # (held: its arrays are views of a memory map it closes when freed)
    corpus = int(dataset.sequence_lengths.sum())
    need = T * cfg.global_batch_size * cfg.seq_length
    note = f"data: {corpus / 1e6:.1f}M tokens; a full run reads {need / 1e6:.1f}M ({need / corpus:.1f} epochs)"
    return note + (" -- more than a few epochs: pass a larger corpus with --data-path" if need > 3 * corpus else "")


def summarise(run: Run, records: list[dict], ref: list[dict] | None, wall: float) -> dict:
    from megatron_grow.growth.tau import mixing_time

    its = [r for r in records if "lm_loss" in r]
    vals = [r for r in records if "val_loss" in r]
    out = {"name": run.name, "source_layers": run.source, "tau_fraction": run.tau, "init": run.init,
           "schedule": run.schedule, "reference": run.reference, "val_loss": vals[-1]["val_loss"],
           "train_loss": its[-1]["lm_loss"], **{k: its[-1][k] for k in ("cum_flops", "cum_flops_6n",
                                                                        "cum_flops_6n_nonemb", "cum_tokens",
                                                                        "train_seconds")},
           "job_wall_s": wall,
           "curve": [{"iter": r["iter"], "val_loss": r["val_loss"],
                      "cum_flops": next(x["cum_flops"] for x in its if x["iter"] == r["iter"])} for r in vals]}
    grow = [r for r in records if r.get("event") == "grow"]
    if grow:
        out["grow_event"] = grow[0]
        if ref is not None:
            mix = mixing_time(ref, records, tolerance=0.01, metric="lm_loss")
            out["t_mix"], out["mixing"] = mix["t_mix"], mix
    return out


def compare(rows: list[dict]) -> None:
    by = {r["name"]: r for r in rows}
    for r in rows:
        ref = by.get(r["reference"])
        if ref is None:
            continue
        r["gap_pct"] = 100 * (r["val_loss"] - ref["val_loss"]) / ref["val_loss"]
        for k in ("cum_flops", "cum_flops_6n", "cum_flops_6n_nonemb", "train_seconds"):
            r[k.replace("cum_", "") + "_ratio"] = r[k] / ref[k]


def markdown(meta: dict, rows: list[dict]) -> str:
    def f(x, fmt):
        return "-" if x is None else format(x, fmt)

    lines = [f"# Progressive vs fixed-size training ({meta['scale']})", "",
             f"{meta['layers']}-layer target, {meta['train_iters']} iterations x {meta['tokens_per_iter']} tokens "
             f"({meta['total_tokens'] / 1e6:.2f}M tokens), {meta['nproc']} processes, data: {meta['data']}. "
             f"Trainer flags: `{' '.join(meta['flags'])}`.", "",
             "| run | schedule | source | tau | init | final val loss | gap vs fixed | FLOPs ratio exact | "
             "6N total | 6N non-emb | wall ratio | t_mix (iters) |",
             "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        src = "fixed" if r["source_layers"] is None else f"{r['source_layers']}L"
        tau = "-" if r["tau_fraction"] is None else f"{r['tau_fraction']:.1f}T"
        tmix = ("never" if r.get("mixing") and r.get("t_mix") is None else f(r.get("t_mix"), "d"))
        lines.append(f"| {r['name']} | {r['schedule']} | {src} | {tau} | {r['init'] if r['tau_fraction'] else '-'} | "
                     f"{r['val_loss']:.4f} | {f(r.get('gap_pct'), '+.2f')}% | {f(r.get('flops_ratio'), '.3f')} | "
                     f"{f(r.get('flops_6n_ratio'), '.3f')} | {f(r.get('flops_6n_nonemb_ratio'), '.3f')} | "
                     f"{f(r.get('train_seconds_ratio'), '.2f')} | {tmix} |")
    lines += ["", "gap: (val - val of the fixed run of the same schedule) / that. FLOPs ratios: the run's cumulative "
              "compute over the fixed run's, per convention (megatron_grow/flops.py). wall ratio: training step + "
              "growth time over the fixed run's. t_mix: iterations after tau until the smoothed train loss stays "
              "within 1% of the fixed run's (\"never\": not within the run).", ""]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    colors = plt.get_cmap("tab20").colors  # one colour per run (the default cycle repeats after 10)
    for i, r in enumerate(rows):
        short = r["name"].startswith("fixed-") and r["schedule"] == "wsd"  # a shorter fixed-size run
        style = ":" if r["schedule"] != "wsd" else "--" if short else "-"
        width = 2.5 if r["source_layers"] is None else 1.2
        x_f = [p["cum_flops"] for p in r["curve"]]
        x_i = [p["iter"] for p in r["curve"]]
        y = [p["val_loss"] for p in r["curve"]]
        for ax, x in zip(axes, (x_f, x_i), strict=False):
            ax.plot(x, y, style, lw=width, color=colors[i % len(colors)], label=r["name"])
    axes[0].set_xscale("log")
    axes[0].set_xlabel("training FLOPs (exact matmul count, cumulative)")
    axes[1].set_xlabel("iteration")
    for ax in axes:
        ax.set_ylabel("held-out loss")
        ax.grid(alpha=0.3)
        lo = min(p["val_loss"] for r in rows for p in r["curve"])
        ax.set_ylim(lo - 0.1, lo + 2.0)
    axes[1].legend(fontsize=8, ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    ap.add_argument("--train-iters", type=int, help="T (default: the scale's)")
    ap.add_argument("--nproc", type=int, help="processes (default: the scale's)")
    ap.add_argument("--optimizer", default="muon-nsgd", choices=["muon-nsgd", "adam"])
    ap.add_argument("--data-path", default="demo")
    ap.add_argument("--tokenizer-model")
    ap.add_argument("--only", help="comma-separated run names (default: all)")
    ap.add_argument("--extra", default="", help="more trainer flags for every run")
    ap.add_argument("--reuse", action="store_true", help="reuse complete runs from an earlier invocation's run dir")
    ap.add_argument("--dry-run", action="store_true", help="print the runs and expected time, run nothing")
    ap.add_argument("--out", help="output stem (default: benchmarks/results/progressive_vs_fixed_<scale>)")
    args = ap.parse_args(argv)

    import shlex

    scale = SCALES[args.scale]
    T, nproc, L = args.train_iters or scale["train_iters"], args.nproc or scale["nproc"], scale["layers"]
    data, tokenizer, data_name = args.data_path, args.tokenizer_model, args.data_path
    if data == "demo":  # the demo corpus, tokenized with the scale's vocabulary
        from megatron_grow.data.corpus import DEFAULT_VOCAB, demo_corpus

        vocab = scale.get("demo_vocab", DEFAULT_VOCAB)
        data, tokenizer = demo_corpus(vocab_size=vocab)
        data_name = f"demo corpus, {vocab}-token vocabulary"
    flags = [*scale["flags"], "--optimizer", args.optimizer, "--log-interval", "1", "--data-path", data,
             *(["--tokenizer-model", tokenizer] if tokenizer else []), *shlex.split(args.extra)]
    runs = [r for r in RUNS if not args.only or r.name in args.only.split(",")]
    out = args.out or os.path.join(RESULTS, f"progressive_vs_fixed_{args.scale}")
    run_dir = out + "_runs"

    est = {r.name: expected_seconds(r, scale, T, flags) for r in runs}
    print(f"{len(runs)} runs of {T} iterations, {L}-layer target, {nproc} processes; expected time "
          f"~{sum(est.values()) / 60:.0f} min (assuming {scale['flops_per_s'] / 1e12:g} TFLOP/s sustained):")
    for r in runs:
        print(f"  {r.name:18s} {' '.join(r.flags(L, T)):60s} ~{est[r.name] / 60:.1f} min")
    print(epochs_note(data, T, _cfg(flags, [], scale.get("demo_vocab", 4096))))
    if args.dry_run:
        return

    t0, rows, records = time.time(), [], {}
    for r in runs:
        metrics = os.path.join(run_dir, f"{r.name}.jsonl")
        done = args.reuse and os.path.exists(metrics) and any(
            rec.get("iter") == r.iters(T) and "val_loss" in rec for rec in read_metrics(metrics))
        if done:
            res = {"records": read_metrics(metrics), "wall_s": None}
        else:
            res = train([*flags, *r.flags(L, T)], metrics, nproc)
        records[r.name] = res["records"]
        rows.append(summarise(r, res["records"], records.get(r.reference), res["wall_s"]))
        took = "reused" if done else f"{res['wall_s']:.0f}s"
        print(f"{r.name:18s} val {rows[-1]['val_loss']:.4f}  exact FLOPs {rows[-1]['cum_flops']:.3g}  ({took})",
              flush=True)
    compare(rows)
    tokens_per_iter = records[runs[0].name][0]["tokens"]
    meta = {"scale": args.scale, "layers": L, "train_iters": T, "nproc": nproc, "tokens_per_iter": tokens_per_iter,
            "total_tokens": tokens_per_iter * T, "data": data_name, "flags": flags,
            "optimizer": args.optimizer, "expected_s": est, "measured_s": time.time() - t0}
    table = markdown(meta, rows)
    write(out, {"meta": meta, "runs": rows}, table)
    plot(rows, out + ".png", f"{L}-layer target, {T} iterations, {args.optimizer}")
    print("\n" + table)
    print(f"measured {meta['measured_s'] / 60:.1f} min (expected ~{sum(est.values()) / 60:.0f}); "
          f"wrote {out}.json/.md/.png")


if __name__ == "__main__":
    main()
