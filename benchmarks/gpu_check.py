"""Everything that needs a GPU, in one call that fits 8 minutes of one H100/H200, as one table.

    bash benchmarks/gpu_check.sh                      # CUDA: full sizes; without CUDA: --reduced
    bash benchmarks/gpu_check.sh --reduced --out DIR  # toy sizes on CPU (what CI runs, ~1-2 min)

Sections (each runs even when an earlier one failed; a failure is recorded in its row):

1. training: real trainer runs (benchmarks/launch.py: ``python -m megatron_grow.train`` under torchrun,
   NCCL, mock data) of LLaMA3-1B-shaped layers (preset 1b, 4 layers, seq 2048) and LLaMA3-8B-shaped
   layers (preset 8b, 2 layers, seq 4096) in bf16, Transformer Engine specs when TE imports (else
   local; the table says which): tokens/s and MFU (median over the logged iterations after the
   first warm-up ones), peak memory (the metrics' gpu_mem_peak_gib, torch.cuda.max_memory_allocated)
   against megatron_grow/memory.py's estimate for the same finalized config.
2. bf16 vs fp32: the 1B-shaped run again with --no-bf16 (the trainer leaves torch's TF32 matmuls
   off, so torch's matmuls are fp32; Transformer Engine's GEMMs may still take fp32 inputs through
   TF32), and the largest relative difference of the training losses over the steps. Tolerance 2%:
   bf16 rounds to 2^-8 relative, while megatron keeps fp32 master weights, fp32 gradient buffers and
   an fp32 loss, so a dozen steps drift well under 1% (the loss itself falls far more than 2% over
   those steps, so a bf16 path whose updates went wrong would not pass).
3. growth: a 1-layer model grown to 4 layers at an iteration inside the run: the growth event's
   seconds and held-out loss before / after, from the metrics stream's grow record.
4. Newton-Schulz: benchmarks/ns_kernels.py (a subprocess, with a timeout) at 4096 and 8192 and the
   LLaMA3-8B weight shapes, backends torch / triton / te that run here: ms and TFLOP/s; the
   Triton / torch speedup at 8192; the Muon step's share of a LLaMA3-8B layer's iteration.

Targets (reported pass / fail; a missed target does not fail the script): LLaMA3-8B-shaped layers at
>= 45% MFU in bf16; Triton Newton-Schulz >= 1.5x torch at 8192; the planner within 10% of the
measured peak memory. ``--reduced`` (automatic without CUDA): the same sections at toy sizes on CPU
/ gloo in fp32: LLaMA3 tiny (hidden 128, 2 layers, seq 128), growth 1 -> 2 layers, Newton-Schulz at
256 with the torch backend, and the tiny run in bf16 against fp32; no MFU or GPU memory there.
Every run gets a timeout inside the --budget (default 450 s on CUDA, under gpu_check.sh's 480 s;
400 s on CPU). Writes gpu_check_<device>.json / .md into --out after every section.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.launch import RESULTS, ROOT, train, write  # noqa: E402

COMMON = ["--model", "llama3", "--mock-data", "--log-interval", "1", "--eval-interval", "1000", "--eval-iters", "2"]
GPU_RUNS = {  # name: (flags, timeout cap in s)
    "1b": (["--preset", "1b", "--num-layers", "4", "--seq-length", "2048", "--micro-batch-size", "4",
            "--global-batch-size", "8", "--train-iters", "12", "--lr", "3e-4"], 100),
    "8b": (["--preset", "8b", "--num-layers", "2", "--seq-length", "4096", "--micro-batch-size", "2",
            "--global-batch-size", "16", "--train-iters", "10", "--lr", "3e-4"], 100),
    "grow": (["--preset", "1b", "--num-layers", "1", "--grow-to-layers", "4", "--grow-at-iter", "4",
              "--seq-length", "2048", "--micro-batch-size", "4", "--global-batch-size", "8", "--train-iters", "8",
              "--lr", "3e-4"], 100),
}
TINY = ["--preset", "tiny", "--vocab-size", "4096", "--micro-batch-size", "2", "--global-batch-size", "4"]
CPU_RUNS = {
    "tiny": ([*TINY, "--train-iters", "4"], 150),
    "grow": ([*TINY, "--num-layers", "1", "--grow-to-layers", "2", "--grow-at-iter", "2", "--train-iters", "4"], 150),
}
MFU_TARGET, NS_SPEEDUP_TARGET, PLANNER_TOLERANCE, LOSS_TOLERANCE = 0.45, 1.5, 0.10, 0.02


def flags(name: str, cuda: bool, impl: str, bf16: bool) -> list[str]:
    """The trainer's flags for run ``name`` of GPU_RUNS (``cuda``) or CPU_RUNS."""
    return [*COMMON, *(GPU_RUNS if cuda else CPU_RUNS)[name][0], "--device", "cuda" if cuda else "cpu",
            "--transformer-impl", impl, "--bf16" if bf16 else "--no-bf16"]


class Check:
    def __init__(self, args):
        import torch

        self.cuda = torch.cuda.is_available() and not args.reduced
        self.reduced = not self.cuda
        self.device = "cuda" if self.cuda else "cpu"
        self.name = re.sub(r"[^a-z0-9]+", "_", torch.cuda.get_device_name(0).lower().replace("nvidia", "")).strip("_") \
            if self.cuda else "cpu"
        if self.cuda:
            from megatron_grow.platform import te_available

            self.impl = "transformer_engine" if te_available() else "local"
        else:
            self.impl = "local"
        self.nproc = args.nproc
        self.deadline = time.time() + (args.budget or (450 if self.cuda else 400))
        self.work = tempfile.mkdtemp(prefix="gpu_check_")
        self.runs: dict[str, dict] = {}
        self.specs = GPU_RUNS if self.cuda else CPU_RUNS

    def flags(self, name: str, bf16: bool | None = None) -> list[str]:
        return flags(name, self.cuda, self.impl, self.cuda if bf16 is None else bf16)

    def timeout(self, cap: float) -> float:
        left = self.deadline - time.time()
        if left < 20:
            raise TimeoutError(f"out of the time budget ({left:.0f} s left)")
        return min(cap, left)

    def run(self, name: str, bf16: bool | None = None) -> list[dict]:
        """The metrics records of trainer run ``name`` (once per name and precision)."""
        key = f"{name}-{'bf16' if (self.cuda if bf16 is None else bf16) else 'fp32'}"
        if key not in self.runs:
            metrics = os.path.join(self.work, key + ".jsonl")
            self.runs[key] = train(self.flags(name, bf16), metrics, self.nproc, self.timeout(self.specs[name][1]))
        return self.runs[key]["records"]

    def plan(self, name: str) -> float:
        """The memory planner's per-rank peak (bytes) for run ``name``'s finalized config."""
        from megatron_grow import config, memory
        from megatron_grow.finalize import finalize

        cfg = finalize(config.parse_args(self.flags(name)), self.nproc, self.device, self.impl == "transformer_engine")
        return memory.estimate(cfg)["peak"]


def row(section, check, value, target="-", ok=None, number=None) -> dict:
    """A table row; ``number``: the value as a number, for the JSON (tests, comparisons)."""
    return {"section": section, "check": check, "value": value, "target": target, "pass": ok, "number": number}


def error(e: Exception) -> str:
    """An exception in one table cell: its type, the start of its message (a failed run: why, and the
command) and the end (the run's log tail)."""
    msg = " ".join(str(e).split())
    msg = msg if len(msg) <= 400 else msg[:150] + " ... " + msg[-250:]
    return f"error: {type(e).__name__}: {msg}".replace("|", "/")


def steady(records: list[dict], key: str, warmup: int) -> float | None:
    """Median of ``key`` over the logged training iterations after the first ``warmup``."""
    vals = [r[key] for r in records if "lm_loss" in r and r.get(key) is not None]
    vals = vals[warmup:] or vals
    return statistics.median(vals) if vals else None


def training(c: Check) -> list[dict]:
    rows = []
    for name in (["1b", "8b"] if c.cuda else ["tiny"]):
        label = {"1b": "LLaMA3-1B-shaped x4, seq 2048", "8b": "LLaMA3-8B-shaped x2, seq 4096"}.get(
            name, "LLaMA3 tiny x2, seq 128")
        precision = "bf16" if c.cuda else "fp32"
        try:
            rec = c.run(name)
            warm = 3 if c.cuda else 1
            tps = steady(rec, "tokens_per_s", warm)
            rows.append(row("training", f"{label}: tokens/s ({precision}, {c.impl}, {c.nproc} proc)", f"{tps:.0f}",
                            number=tps))
            mfu = steady(rec, "mfu", warm)
            target = f">= {MFU_TARGET:.0%}" if name == "8b" else "-"
            rows.append(row("training", f"{label}: MFU", f"{mfu:.1%}" if mfu is not None else "n/a (no GPU)", target,
                            mfu >= MFU_TARGET if name == "8b" and mfu is not None else None, mfu))
            peaks = [r["gpu_mem_peak_gib"] for r in rec if r.get("gpu_mem_peak_gib")]
            measured = max(peaks[-1]) * 2**30 if peaks else None
        except Exception as e:  # noqa: BLE001 (recorded in the table)
            rows.append(row("training", f"{label}: run", error(e), ok=False))
            measured = None
        try:
            est = c.plan(name)
            if measured:
                err = est / measured - 1
                rows.append(row("training", f"{label}: peak memory, planner vs measured (max allocated)",
                                f"{est / 2**30:.2f} vs {measured / 2**30:.2f} GiB ({err:+.1%})",
                                f"within {PLANNER_TOLERANCE:.0%}", abs(err) <= PLANNER_TOLERANCE, err))
            else:
                rows.append(row("training", f"{label}: peak memory, planner (measured: GPU only)",
                                f"{est / 2**30:.3f} GiB", number=est / 2**30))
        except Exception as e:  # noqa: BLE001
            rows.append(row("training", f"{label}: memory planner", error(e), ok=False))
    return rows


def precision(c: Check) -> list[dict]:
    name = "1b" if c.cuda else "tiny"  # (the CPU runs bf16 the same way: Float16Module, fp32 masters)
    bf16 = {r["iter"]: r["lm_loss"] for r in c.run(name, True) if "lm_loss" in r}
    fp32 = {r["iter"]: r["lm_loss"] for r in c.run(name, False) if "lm_loss" in r}
    diff = max(abs(bf16[i] - fp32[i]) / abs(fp32[i]) for i in fp32)
    label = "LLaMA3-1B-shaped x4" if c.cuda else "LLaMA3 tiny x2"
    return [row("bf16 vs fp32", f"{label}: max relative loss difference over {len(fp32)} steps "
                f"(fp32 loss {fp32[min(fp32)]:.3f} -> {fp32[max(fp32)]:.3f})",
                f"{diff:.2%}", f"<= {LOSS_TOLERANCE:.0%}", diff <= LOSS_TOLERANCE, diff)]


def growth(c: Check) -> list[dict]:
    rec = c.run("grow")
    event = next(r for r in rec if r.get("event") == "grow")
    label = f"{event['from_layers']} -> {event['to_layers']} layers at iter {event['iter']}"
    return [row("growth", f"{label}: seconds", f"{event['seconds']:.2f}", number=event["seconds"]),
            row("growth", f"{label}: held-out loss before -> after",
                f"{event['loss_before']:.4f} -> {event['loss_after']:.4f}", "finite",
                math.isfinite(event["loss_before"]) and math.isfinite(event["loss_after"]))]


def newton_schulz(c: Check) -> list[dict]:
    import json

    out = os.path.join(c.work, "ns")
    argv = (["--sizes", "4096,8192", "--shapes", "llama3-8b", "--backends", "torch,triton,te", "--repeats", "5"]
            if c.cuda else ["--sizes", "256", "--shapes", "llama3-8b", "--scale", "0.03125", "--backends", "torch",
                            "--tokens", "256", "--repeats", "2"])
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "ns_kernels.py"), "--device", c.device, *argv, "--out", out]
    with open(os.path.join(c.work, "ns.log"), "w") as log:
        subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=c.timeout(120), check=True)
    with open(os.path.join(out, f"ns_kernels_{c.device}.json")) as f:
        res = json.load(f)
    rows = [row("Newton-Schulz", f"{r['label']} {r['shape'][0]}x{r['shape'][1]} [{r['backend']}]",
                f"{r['ms']:.2f} ms, {r['tflops']:.3g} TFLOP/s", number=r["ms"]) for r in res["newton_schulz"]]
    rows += [row("Newton-Schulz", f"backend {b}", f"skipped: {why}") for b, why in res["meta"]["skipped"].items()]
    big = {r["backend"]: r for r in res["newton_schulz"] if r["label"] == "square" and r["shape"][0] == 8192}
    if "triton" in big and "torch" in big:
        sp = big["torch"]["ms"] / big["triton"]["ms"]
        rows.append(row("Newton-Schulz", "Triton / torch speedup at 8192", f"{sp:.2f}x",
                        f">= {NS_SPEEDUP_TARGET}x", sp >= NS_SPEEDUP_TARGET, sp))
    else:
        rows.append(row("Newton-Schulz", "Triton / torch speedup at 8192", "n/a (needs CUDA, Triton and size 8192)",
                        f">= {NS_SPEEDUP_TARGET}x"))
    for layer in res["optimizer_step_per_layer"]:
        for b in res["meta"]["backends"]:
            share = layer[f"muon_{b}_share"]
            rows.append(row("Newton-Schulz", f"Muon[{b}] step share of a {layer['model']} layer's iteration "
                            f"({layer['tokens']} tokens{'' if c.cuda else ', shapes x1/32'})", f"{share:.1%}",
                            number=share))
    return rows


SECTIONS = [("training", training), ("bf16 vs fp32", precision), ("growth", growth), ("Newton-Schulz", newton_schulz)]


def markdown(meta: dict, rows: list[dict]) -> str:
    out = [f"# GPU check on {meta['device_name']}", "",
           f"{meta['mode']}; transformer impl {meta['impl']}; {meta['nproc']} process(es) per run; "
           f"{meta['seconds']:.0f} s in all (" + ", ".join(f"{k} {v:.0f} s" for k, v in meta["section_seconds"].items())
           + ").", "",
           "| section | check | value | target | pass |", "|---|---|---|---|---|"]
    for r in rows:
        ok = "-" if r["pass"] is None else ("pass" if r["pass"] else "FAIL")
        out.append(f"| {r['section']} | {r['check']} | {r['value']} | {r['target']} | {ok} |")
    return "\n".join(out) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reduced", action="store_true", help="toy sizes on CPU (automatic without CUDA)")
    ap.add_argument("--nproc", type=int, default=1, help="processes (GPUs) per trainer run")
    ap.add_argument("--budget", type=float, default=None, help="seconds for all runs (default 450 CUDA, 400 CPU)")
    ap.add_argument("--out", default=RESULTS)
    args = ap.parse_args(argv)
    t0 = time.time()
    c = Check(args)
    import torch

    meta = {"device": c.name, "device_name": torch.cuda.get_device_name(0) if c.cuda else "CPU",
            "mode": "full (CUDA, NCCL, bf16)" if c.cuda else "reduced (CPU, gloo, fp32, toy sizes)",
            "impl": c.impl, "nproc": c.nproc, "torch": torch.__version__}
    stem = os.path.join(args.out, f"gpu_check_{c.name}")
    rows: list[dict] = []
    meta["section_seconds"] = {}
    for section, fn in SECTIONS:
        t = time.time()
        try:
            rows += fn(c)
        except Exception as e:  # noqa: BLE001 (each section runs; its error goes in the table)
            rows.append(row(section, "run", error(e), ok=False))
        meta["section_seconds"][section] = round(time.time() - t, 1)
        meta["seconds"] = time.time() - t0
        with contextlib.suppress(OSError):
            write(stem, {"meta": meta, "rows": rows}, markdown(meta, rows))
    print(markdown(meta, rows))
    print(f"wrote {stem}.json and {stem}.md (run logs in {c.work})")


if __name__ == "__main__":
    main()
