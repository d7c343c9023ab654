"""Newton-Schulz backends, timed, and the optimizer step's share of a training iteration.

  python benchmarks/ns_kernels.py                      # defaults for the device (see --help)
  python benchmarks/ns_kernels.py --device cuda --backends torch,triton --repeats 20

Part 1, per matrix shape and backend: ms per Newton-Schulz call (5 steps), TFLOP/s and speedup over
torch. FLOPs are the nominal count of the iteration for every backend, so speedups compare: per
step, for X of m x n with m <= n, X X^T 2 m^2 n + A A 2 m^3 + B X 2 m^2 n (the Triton kernels
compute only half of each symmetric product, which shows up as a higher "TFLOP/s").

Part 2, per weight shape of LLaMA3-8B and the paper's 7B GPT2 (the trainer's presets llama3 8b
and gpt2 7b): the fwd+bwd matmuls of that linear layer for --tokens tokens vs one optimizer step
on that weight (a Muon step: momentum + Newton-Schulz + update, per backend; an AdamW step:
torch.optim.AdamW on one parameter), and the step's share step / (step + fwd_bwd); then the same
for the layer's four matrices together, the share of a training iteration spent in the step.

Defaults: on CUDA everything (square 1024..8192, full model shapes, bf16, 8192 tokens); on CPU, so
that it finishes in minutes on two cores, squares 1024 and 2048, the model shapes scaled by 1/4
(--scale), fp32 and 1024 tokens. Writes ns_kernels_<device>.json and .md into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from megatron_grow.optim import newton_schulz as ns

SQUARE = (1024, 2048, 4096, 8192)
MODELS = {"llama3-8b": ("llama3", "8b"), "gpt2-7b": ("gpt2", "7b")}  # the trainer's presets


def weight_shapes(family: str, preset_name: str) -> dict[str, tuple[int, int]]:
    """(out_features, in_features) of one layer's matrices, as megatron stores them, from a preset
    (LLaMA3-8B: hidden 4096, 32 heads in 8 KV groups, gated ffn 14336; GPT2 7B: hidden 3072, 24
    heads, ffn 12288)."""
    from megatron_grow.models import FAMILIES, preset

    p, fam = preset(family, preset_name), FAMILIES[family]
    h, f, n = p["hidden_size"], p["ffn_hidden_size"], p["num_attention_heads"]
    g, d = p.get("num_query_groups") or n, p.get("kv_channels") or h // n
    return {"qkv": ((n + 2 * g) * d, h), "proj": (h, n * d),
            "fc1": (f * (2 if fam["gated_linear_unit"] else 1), h), "fc2": (h, f)}


STEPS = 5
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def ns_flops(m: int, n: int, steps: int = STEPS) -> float:
    m, n = min(m, n), max(m, n)
    return steps * (4.0 * m * m * n + 2.0 * m ** 3)


def timed(fn, device, repeats: int) -> float:
    """Median ms of ``fn()`` over ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def backends_for(device, wanted):
    usable, skipped = [], {}
    for b in wanted:
        why = ns.unavailable_reason(b, device)
        if why is None and b == "triton" and device.type != "cuda":
            why = "the Triton interpreter (TRITON_INTERPRET=1) is for tests, not timing"
        if why:
            skipped[b] = why
        else:
            usable.append(b)
    return usable, skipped


def bench_ns(shape, backends, device, dtype, repeats):
    G = torch.randn(*shape, device=device, dtype=dtype)
    rows = []
    for b in backends:
        fn = ns._function(b)
        ms = timed(lambda fn=fn: fn(G, STEPS), device, repeats)
        rows.append({"shape": list(shape), "backend": b, "ms": ms, "tflops": ns_flops(*shape) / ms / 1e9})
    base = next((r["ms"] for r in rows if r["backend"] == "torch"), None)
    for r in rows:
        r["speedup"] = base / r["ms"] if base else None
    return rows


def bench_layer(model, layer, shape, backends, device, dtype, tokens, repeats):
    out_f, in_f = shape
    W = torch.randn(out_f, in_f, device=device, dtype=dtype, requires_grad=True)
    x = torch.randn(tokens, in_f, device=device, dtype=dtype, requires_grad=True)
    gy = torch.randn(tokens, out_f, device=device, dtype=dtype)

    def fwd_bwd():  # y = x W^T; dgrad and wgrad, as in a layer inside the model
        torch.nn.functional.linear(x, W).backward(gy)
        W.grad = x.grad = None

    row = {"model": model, "layer": layer, "shape": list(shape), "tokens": tokens,
           "fwd_bwd_ms": timed(fwd_bwd, device, repeats)}
    W.requires_grad_(False)

    # optimizer state in fp32, as megatron keeps main params and grads
    p = torch.nn.Parameter(W.float())
    p.grad = torch.randn_like(p) * 1e-3
    adamw = torch.optim.AdamW([p], lr=1e-4, **({"fused": True} if device.type == "cuda" else {}))
    row["adamw_ms"] = timed(adamw.step, device, repeats)
    del adamw

    buf = torch.zeros_like(p)
    scale = max(1.0, out_f / in_f) ** 0.5
    for b in backends:
        fn = ns._function(b)

        def muon_step(fn=fn):
            buf.mul_(0.95).add_(p.grad)
            update = p.grad.add(buf, alpha=0.95)  # Nesterov
            p.data.mul_(1 - 1e-4 * 0.01)
            p.data.add_(fn(update, STEPS), alpha=-1e-4 * scale)

        row[f"muon_{b}_ms"] = timed(muon_step, device, repeats)
    for key in [k for k in row if k.endswith("_ms") and k != "fwd_bwd_ms"]:
        row[key.replace("_ms", "_share")] = row[key] / (row[key] + row["fwd_bwd_ms"])
    return row


def whole_layers(layer_rows, backends) -> list[dict]:
    """Per model, the four matrices of a layer together: the optimizer step's share of the
    layer's iteration (the model's, when its layers dominate)."""
    out = []
    for model in dict.fromkeys(r["model"] for r in layer_rows):
        rows = [r for r in layer_rows if r["model"] == model]
        tot = {"model": model, "layer": "**layer**", "shape": None, "tokens": rows[0]["tokens"]}
        for key in ["fwd_bwd_ms", "adamw_ms"] + [f"muon_{b}_ms" for b in backends]:
            tot[key] = sum(r[key] for r in rows)
        for key in ["adamw_ms"] + [f"muon_{b}_ms" for b in backends]:
            tot[key.replace("_ms", "_share")] = tot[key] / (tot[key] + tot["fwd_bwd_ms"])
        out.append(tot)
    return out


def markdown(meta, ns_rows, layer_rows, backends) -> str:
    out = [f"# Newton-Schulz kernels on {meta['device_name']}", "",
           (f"torch {meta['torch']}, triton {meta['triton']}; input dtype {meta['dtype']}, "
            f"Newton-Schulz computes in {meta['ns_compute_dtype']}; {STEPS} steps; median of {meta['repeats']} "
            f"(after a warm-up call)."), ""]
    out += [f"- {n}" for n in meta["notes"]]
    out += ["", "## Newton-Schulz call", "",
            "| shape (m x n) | backend | ms / call | TFLOP/s (nominal) | speedup vs torch |",
            "|---|---|---:|---:|---:|"]
    for r in ns_rows:
        sp = f"{r['speedup']:.2f}x" if r["speedup"] else "-"
        out.append(f"| {r['label']} {r['shape'][0]}x{r['shape'][1]} | {r['backend']} | {r['ms']:.2f} "
                   f"| {r['tflops']:.3f} | {sp} |")
    if layer_rows:
        tok = layer_rows[0]["tokens"]
        out += ["", f"## Optimizer step vs fwd+bwd of the layer ({tok} tokens)", "",
                "share = step / (step + fwd_bwd), for that one weight.", "",
                ("| model | layer | weight | fwd+bwd ms | AdamW ms | AdamW share | "
                 + " | ".join(f"Muon[{b}] ms | Muon[{b}] share" for b in backends) + " |"),
                "|---|---|---|---:|---:|---:|" + "---:|---:|" * len(backends)]
        for r in layer_rows + whole_layers(layer_rows, backends):
            cells = [f"{r[f'muon_{b}_ms']:.1f} | {100 * r[f'muon_{b}_share']:.0f}%" for b in backends]
            shape = f"{r['shape'][0]}x{r['shape'][1]}" if r["shape"] else "all four"
            out.append(f"| {r['model']} | {r['layer']} | {shape} | {r['fwd_bwd_ms']:.1f} "
                       f"| {r['adamw_ms']:.2f} | {100 * r['adamw_share']:.1f}% | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sizes", default=None, help="square sizes, comma-separated "
                    "(default: 1024,2048,4096,8192 on CUDA, 1024,2048 on CPU; empty: none)")
    ap.add_argument("--shapes", default=None, help="models and/or extra shapes, comma-separated: "
                    f"{', '.join(MODELS)}, or MxN (default: both models; 'none': skip)")
    ap.add_argument("--scale", type=float, default=None,
                    help="scale the model shapes (default 1 on CUDA, 0.25 on CPU)")
    ap.add_argument("--backends", default=",".join(ns.BACKENDS))
    ap.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="default bf16 on CUDA, fp32 on CPU")
    ap.add_argument("--repeats", type=int, default=None, help="default 10 on CUDA, 2 on CPU")
    ap.add_argument("--tokens", type=int, default=None, help="tokens per iteration (default 8192 on CUDA, 1024 on CPU)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    sizes = [int(s) for s in (args.sizes if args.sizes is not None
                              else ",".join(map(str, SQUARE if cuda else SQUARE[:2]))).split(",") if s]
    spec = args.shapes if args.shapes is not None else ",".join(MODELS)
    scale = args.scale if args.scale is not None else (1.0 if cuda else 0.25)
    dtype = DTYPES[args.dtype or ("bf16" if cuda else "fp32")]
    repeats = args.repeats or (10 if cuda else 2)
    tokens = args.tokens or (8192 if cuda else 1024)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    notes = []
    if not cuda:
        notes.append("CPU defaults: squares 1024 and 2048, model shapes x0.25, 1024 tokens; the full set "
                     "(squares to 8192, full LLaMA3-8B / 7B GPT2 shapes, 8192 tokens) is the CUDA default.")
        notes.append("On CPU Newton-Schulz computes in fp32 (bf16 matmuls are slower there). "
                     f"{torch.get_num_threads()} torch threads; load average at start "
                     f"{os.getloadavg()[0]:.1f} (other jobs share the cores: indicative timings only).")
    backends, skipped = backends_for(device, [b.strip() for b in args.backends.split(",") if b.strip()])
    notes += [f"backend {b} skipped: {why}" for b, why in skipped.items()]

    shapes = [("square", (s, s)) for s in sizes]
    for item in [s for s in spec.split(",") if s and s != "none"]:
        if item in MODELS:
            shapes += [(f"{item} {layer}", tuple(max(16, int(d * scale)) for d in wshape))
                       for layer, wshape in weight_shapes(*MODELS[item]).items()]
        else:
            shapes.append(("custom", tuple(int(d) for d in item.lower().split("x"))))

    ns_rows = []
    for label, shape in shapes:
        for r in bench_ns(shape, backends, device, dtype, repeats):
            r["label"] = label
            ns_rows.append(r)
            print(f"NS {label:18s} {shape[0]:6d}x{shape[1]:<6d} {r['backend']:7s} {r['ms']:10.2f} ms "
                  f"{r['tflops']:8.3f} TFLOP/s", flush=True)

    layer_rows = []
    for label, shape in shapes:
        if label in ("square", "custom"):
            continue
        model, layer = label.split()
        row = bench_layer(model, layer, shape, backends, device, dtype, tokens, repeats)
        layer_rows.append(row)
        print(f"step {label:18s} fwd+bwd {row['fwd_bwd_ms']:.1f} ms, AdamW {row['adamw_ms']:.2f} ms, "
              + ", ".join(f"Muon[{b}] {row[f'muon_{b}_ms']:.1f} ms" for b in backends), flush=True)

    import importlib.util
    triton_version = "-"
    if importlib.util.find_spec("triton"):
        import triton
        triton_version = triton.__version__
    meta = {"device": device.type, "device_name": torch.cuda.get_device_name(device) if cuda else
            f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
            "torch": torch.__version__, "triton": triton_version, "dtype": str(dtype).replace("torch.", ""),
            "ns_compute_dtype": "bf16" if cuda else "fp32", "steps": STEPS, "repeats": repeats,
            "tokens": tokens, "scale": scale, "backends": backends, "skipped": skipped, "notes": notes}
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"ns_kernels_{device.type}")
    with open(stem + ".json", "w") as f:
        json.dump({"meta": meta, "newton_schulz": ns_rows, "optimizer_step": layer_rows,
                   "optimizer_step_per_layer": whole_layers(layer_rows, backends)}, f, indent=1)
    table = markdown(meta, ns_rows, layer_rows, backends)
    with open(stem + ".md", "w") as f:
        f.write(table)
    print()
    print(table)
    print(f"wrote {stem}.json and {stem}.md")


if __name__ == "__main__":
    main()
