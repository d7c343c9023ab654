"""muP coordinate check: activation scale vs width over the first training steps, SP vs muP.

    python tools/mup_coord_check.py                       # widths 128..1024, 8 steps, ~1 min on 2 cores
    python tools/mup_coord_check.py --widths 64,128,256,512 --steps 10 --data-path demo --out /tmp/cc.png

For each width (head dim fixed, so heads = width / head_dim; ffn = 3 x width; a tiny LLaMA3-shaped
model, 2 layers, seq 64) a model is built and trained with the trainer's own path
(``megatron_grow.train.setup``: config -> platform -> data -> ``runstate.build_state`` -> model,
optimizer, scheduler; then ``training.train_step``), once in standard parametrisation (SP) and
once with ``--mup --mup-base-hidden-size <smallest width>``. Forward hooks record the RMS of the
embedding output, of every layer's output and of the logits at each training step (step 1 is the
forward pass of the initial weights). The per-parameter Adam LR of muP (1/m for hidden matrices)
is applied by the optimizer itself (megatron_grow/optim builds its param groups with
``megatron_grow.mup.lr_multiplier``); this tool adds nothing of its own.

Output: a PNG (log-log activation RMS vs width, one line per step, one panel per activation kind,
SP row above muP row), a JSON of the numbers, and a table of the slopes of log(RMS) vs log(width)
at the last step. Under muP the slopes should be ~0 (activations do not grow or shrink with
width); under SP the hidden activations and the logits grow with width. Verdict: the check passes
when muP's logit slope is below 0.3 in magnitude and below half of SP's. muP's logits start at
width^-1/2 (readout init var ~ 1/fan_in^2) and become flat once the updates dominate: after ~5
steps at lr 1e-2 their slope is still about -0.25, hence the default of 8 steps.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DEFAULT_OUT = os.path.join("benchmarks", "results", "mup_coord_check.png")


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--widths", default="128,256,512,1024", help="comma-separated hidden sizes")
    p.add_argument("--head-dim", type=int, default=16, help="fixed head dimension (heads = width / head_dim)")
    p.add_argument("--num-layers", type=int, default=2)
    p.add_argument("--seq-length", type=int, default=64)
    p.add_argument("--micro-batch-size", type=int, default=4)
    p.add_argument("--steps", type=int, default=8, help="training steps recorded per width")
    p.add_argument("--lr", type=float, default=1e-2, help="constant LR (no warmup/decay), same for every width")
    p.add_argument("--optimizer", default="adam", choices=["adam", "muon-nsgd"])
    p.add_argument("--model", default="llama3", choices=["llama3", "gpt2"])
    p.add_argument("--vocab-size", type=int, default=1024, help="mock-data vocabulary")
    p.add_argument("--data-path", default=None, help="train on this data (e.g. demo) instead of mock tokens")
    p.add_argument("--seed", type=int, default=1234, help="first seed (init and data order)")
    p.add_argument("--seeds", type=int, default=1, help="average the RMS over this many seeds")
    p.add_argument("--mup-base-num-layers", type=int, default=None, help="also apply depth-muP multipliers")
    p.add_argument("--out", default=DEFAULT_OUT, help="PNG path ('' for no plot)")
    p.add_argument("--json", default=None, help="JSON path (default: --out with .json)")
    return p.parse_args(argv)


def trainer_argv(args, width: int, seed: int, mup: bool) -> list[str]:
    heads = max(1, width // args.head_dim)
    argv = ["--model", args.model, "--preset", "tiny", "--num-layers", str(args.num_layers),
            "--hidden-size", str(width), "--ffn-hidden-size", str(3 * width),
            "--num-attention-heads", str(heads), "--num-query-groups", str(max(1, heads // 2)),
            "--kv-channels", str(args.head_dim), "--seq-length", str(args.seq_length),
            "--micro-batch-size", str(args.micro_batch_size), "--train-iters", str(args.steps),
            "--optimizer", args.optimizer, "--lr", str(args.lr), "--lr-decay-style", "constant",
            "--lr-warmup-iters", "0", "--clip-grad", "0", "--seed", str(seed), "--device", "cpu",
            "--no-bf16", "--no-progress", "--eval-iters", "1"]
    if args.data_path:
        argv += ["--data-path", args.data_path]
    else:
        argv += ["--mock-data", "--vocab-size", str(args.vocab_size)]
    if mup:
        argv += ["--mup", "--mup-base-hidden-size", str(min(widths_of(args)))]
        if args.mup_base_num_layers:
            argv += ["--mup-base-num-layers", str(args.mup_base_num_layers)]
    return argv


def widths_of(args) -> list[int]:
    return [int(w) for w in str(args.widths).split(",")]


def _rms(x) -> float:
    return x.detach().float().pow(2).mean().sqrt().item()


def record(args, width: int, seed: int, mup: bool) -> dict[str, list[float]]:
    """RMS per activation kind per step for one (width, seed, parametrisation) run."""
    from megatron_grow import training
    from megatron_grow.train import setup

    cfg, state, data, dev = setup(trainer_argv(args, width, seed, mup))
    model = state.module
    rms: dict[str, list[float]] = {}

    def hook(kind):
        def fn(module, inputs, output):
            rms.setdefault(kind, []).append(_rms(output[0] if isinstance(output, tuple) else output))
        return fn

    handles = [model.embedding.register_forward_hook(hook("embedding"))]
    handles += [layer.register_forward_hook(hook(f"layer_{layer.layer_number}")) for layer in model.decoder.layers]
    handles.append(model.output_layer.register_forward_hook(hook("logits")))
    it = data.train_iterator(0)
    for _ in range(args.steps):  # one micro-batch per step (global batch = micro batch)
        training.train_step(cfg, state, it, dev)
    for h in handles:
        h.remove()
    return rms


def slope(widths: list[int], values: list[float]) -> float:
    """Least-squares slope of log(value) vs log(width)."""
    xs, ys = [math.log(w) for w in widths], [math.log(max(v, 1e-30)) for v in values]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def coord_check(args) -> dict:
    """{"widths", "steps", "sp"/"mup": {kind: [[rms per width] per step]}, "slopes": {...}}."""
    widths = widths_of(args)
    out = {"widths": widths, "steps": args.steps, "config": vars(args)}
    for name, mup in (("sp", False), ("mup", True)):
        per_width = []
        for w in widths:
            runs = [record(args, w, args.seed + s, mup) for s in range(args.seeds)]
            per_width.append({k: [sum(r[k][t] for r in runs) / len(runs) for t in range(args.steps)]
                              for k in runs[0]})
        kinds = list(per_width[0])
        out[name] = {k: [[pw[k][t] for pw in per_width] for t in range(args.steps)] for k in kinds}
    out["slopes"] = {name: {k: slope(widths, v[-1]) for k, v in out[name].items()} for name in ("sp", "mup")}
    return out


def table(res: dict) -> str:
    kinds = list(res["sp"])
    lines = [f"slope of log(RMS) vs log(width) at step {res['steps']} (widths {res['widths']}):",
             f"  {'activation':<12} {'SP':>8} {'muP':>8}"]
    for k in kinds:
        lines.append(f"  {k:<12} {res['slopes']['sp'][k]:>8.3f} {res['slopes']['mup'][k]:>8.3f}")
    sp, mu = res["slopes"]["sp"]["logits"], res["slopes"]["mup"]["logits"]
    ok = abs(mu) < 0.3 and abs(mu) < 0.5 * abs(sp)
    lines.append(f"verdict: logit-RMS slope SP {sp:+.3f}, muP {mu:+.3f} -> "
                 + ("muP is ~flat across width (coordinate check passes)" if ok else
                    "muP is NOT flat / not flatter than SP (coordinate check fails)"))
    return "\n".join(lines)


def plot(res: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds, widths, steps = list(res["sp"]), res["widths"], res["steps"]
    fig, axes = plt.subplots(2, len(kinds), figsize=(3.2 * len(kinds), 6), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for row, name in enumerate(("sp", "mup")):
        for col, k in enumerate(kinds):
            ax = axes[row][col]
            for t in range(steps):
                ax.plot(widths, res[name][k][t], marker="o", ms=3, color=cmap(t / max(steps - 1, 1)),
                        label=f"step {t + 1}")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{'SP' if name == 'sp' else 'muP'}: {k} (slope {res['slopes'][name][k]:+.2f})", fontsize=9)
            ax.set_xlabel("width")
            if col == 0:
                ax.set_ylabel("RMS")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"muP coordinate check ({res['config']['model']}, {res['config']['optimizer']}, "
                 f"lr {res['config']['lr']}, head dim {res['config']['head_dim']})")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    from megatron_grow import platform
    from megatron_grow.train import _quiet

    _quiet()
    args = parse(argv)
    t0 = time.time()
    res = coord_check(args)
    res["seconds"] = time.time() - t0
    platform.shutdown()
    print(table(res))
    json_path = args.json or (os.path.splitext(args.out)[0] + ".json" if args.out else None)
    if json_path:
        os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
        with open(json_path, "w") as f:
            json.dump(res, f, indent=1)
        print(f"numbers: {json_path}")
    if args.out:
        plot(res, args.out)
        print(f"plot: {args.out}")
    print(f"({res['seconds']:.0f}s)")
    return res


if __name__ == "__main__":
    main()
