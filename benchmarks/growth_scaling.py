"""Where does progressive training pay? The gap of growth vs fixed-size training as a function of
training length T, width and target depth, with fitted laws, seed noise, t_mix vs tau, and recipe
variants, all measured with the trainer itself (the runner of benchmarks/progressive_vs_fixed.py).

    python benchmarks/growth_scaling.py --dry-run              # the runs, their keys, expected core-time
    python benchmarks/growth_scaling.py --reuse                # run what is missing, then analyse
    python benchmarks/growth_scaling.py --reuse --axes T,seeds # only some parts
    python benchmarks/growth_scaling.py --analyse-only         # tables, laws and plots from stored runs

Every run is one single-process job (1 thread); ``--jobs`` of them (default 2: one per core) run
concurrently. Each completed run is stored as benchmarks/results/growth_scaling/runs/<key>.json
(its summary, held-out curve and per-iteration train loss), so the study grows over several
sessions with --reuse and the analysis never needs the jobs' raw metrics.

A *point* is (width, vocabulary, target depth L, T, seed). At each point:
  fixed            L layers for T iterations, WSD                      (the reference)
  fixed-0.6/0.35   L layers for 0.6 T / 0.35 T, each its own full WSD (the fixed-size frontier)
  p0-random-0.8/0.5, p1-copy_zeroL-0.8/0.5, p1-copy-0.5   grown at 0.8 T / 0.5 T
Gaps: ``gap`` = val / val(fixed) - 1; ``gap_matched`` = val / frontier(c) - 1, where c is the run's
compute (6 N tokens with all parameters; the exact matmul count is reported too) relative to the
fixed run and frontier(c) the held-out loss the fixed-size model reaches at that compute with its
own schedule (log-loss interpolated linearly in log-compute between fixed-0.35, 0.6 and 1.0).
Growth pays where gap_matched < 0 by more than the seed noise.

Axes (all GPT2-shaped, head dimension 16, seq 128, 16 x 128 tokens per iteration, Muon-NSGD LR
1e-2, the bundled demo corpus):
  T      width 32, vocab 512, L 8; T = 375, 750, 1500, 3000 (8x)
  depth  width 32, vocab 512, T 1500; L = 4, 8, 16 (fixed, fixed-0.35, p0-random-0.8, p1-copy_zeroL-0.8)
  width  ~25% embedding share (vocab scaled with width: 16/512, 32/1024, 64/2048), L 8,
         T set for 12 tokens per parameter
  seeds  fixed and p1-copy_zeroL-0.8 at seeds 1, 2 (point T 1500): the noise of a gap
  w16    the width-16 point again: two more seeds, the stack placement, tau 0.88 T (under 0.45x in 6N)
  tmix   p0-random grown at 0.1, 0.3, 0.5, 0.7 T (T 1500), WSD and cosine: t_mix vs tau
  recipe variants of the 0.8 T growth at T 1500 (each against the same fixed baseline)
  twostep the two-step growth (1 -> 4 at 0.7 T, 4 -> 8 at 0.85 T; --grow-schedule) along T and width
Laws: log gap = log a - b log x per progressive setting and axis, fitted by least squares;
crossings of 1% and 0.5% with a 68% interval from a parametric bootstrap with the measured
seed noise. Writes growth_scaling.json, .md and .png into benchmarks/results/.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import functools
import json
import math
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.launch import RESULTS, train, write  # noqa: E402
from benchmarks.progressive_vs_fixed import Run, _cfg, summarise  # noqa: E402

OUT = os.path.join(RESULTS, "growth_scaling")
HEAD_DIM = 16
TOKENS_PER_ITER = 16 * 128
BASE = ["--model", "gpt2", "--preset", "tiny", "--seq-length", "128", "--device", "cpu", "--micro-batch-size", "16",
        "--global-batch-size", "16", "--lr", "1e-2", "--optimizer", "muon-nsgd", "--eval-iters", "16",
        "--log-interval", "1"]
STEP_S = {16: 0.06, 32: 0.09, 64: 0.2, 128: 0.6}  # seconds per iteration of an 8-layer model, 1 core (128: bf16)

FIXED = [Run("fixed", None), Run("fixed-0.6", None, length=0.6), Run("fixed-0.35", None, length=0.35)]
GROWN = [Run("p0-random-0.8", 0, 0.8), Run("p0-random-0.5", 0, 0.5), Run("p1-copy_zeroL-0.8", 1, 0.8, "copy_zeroL"),
         Run("p1-copy_zeroL-0.5", 1, 0.5, "copy_zeroL"), Run("p1-copy-0.5", 1, 0.5, "copy")]
LAW_RUNS = [r.name for r in GROWN] + ["p1-copy_zeroL-2step", "fixed-0.35"]
TMIX_TAUS = (0.1, 0.3, 0.5, 0.7)
# recipe variants (issue 13, item 3): name -> (base run, extra trainer flags)
RECIPES = {
    "p1-copy_zeroL-0.8+reset": ("p1-copy_zeroL-0.8", ["--grow-optimizer-state", "reset"]),
    "p1-copy_zeroL-0.8+copystate": ("p1-copy_zeroL-0.8", ["--grow-optimizer-state", "copy"]),
    "p1-copy_zeroL-0.8-stack": ("p1-copy_zeroL-0.8", ["--grow-placement", "stack"]),
    "p1-copy_zeroL-0.8+lr3": ("p1-copy_zeroL-0.8", ["--grow-new-layer-lr-mult", "3"]),
    "p0-random-0.8+lr3": ("p0-random-0.8", ["--grow-new-layer-lr-mult", "3"]),
    "p0-random-0.8+lr3to1": ("p0-random-0.8", ["--grow-new-layer-lr-mult", "3", "--grow-new-layer-lr-iters", "150"]),
    "p0-random-0.8+rewarm": ("p0-random-0.8", ["--grow-new-layer-lr-mult", "0", "--grow-new-layer-lr-iters", "50"]),
    # depth-muP with the 1-layer base: every branch of the grown 8-layer model scaled by sqrt(1/8)
    "p0-random-0.8+depthmup": ("p0-random-0.8",
                               ["--mup", "--mup-base-hidden-size", "32", "--mup-base-num-layers", "1"]),
    # AdamW at the LR benchmarks/optimizer_sweep.py found best (5e-3), fixed-size and grown
    "fixed+adam5e-3": ("fixed", ["--optimizer", "adam", "--lr", "5e-3"]),
    "p1-copy_zeroL-0.8+adam5e-3": ("p1-copy_zeroL-0.8", ["--optimizer", "adam", "--lr", "5e-3"]),
    # growing in two steps (CHAINS): 1 -> 4 layers at 0.7 T, 4 -> 8 at 0.85 T (0.31 of the fixed run's
    # non-embedding compute, as the one-step 0.8 T growth's 0.30)
    "p1-copy_zeroL-2step": ("p1-copy_zeroL-0.8", []),
    "p1-copy_zeroL-2step-stack": ("p1-copy_zeroL-0.8", ["--grow-placement", "stack"]),
}
# a variant that grows more than once: (source layers, target layers, tau as a fraction of T) per growth,
# one run with --grow-schedule (the runs stored before it existed chained one run per growth, each resuming
# the previous one's checkpoint: the same losses)
CHAINS = {name: ((1, 4, 0.7), (4, 8, 0.85)) for name in ("p1-copy_zeroL-2step", "p1-copy_zeroL-2step-stack")}
CHAINS["p1-copy_zeroL-2step-late"] = ((1, 4, 0.8), (4, 8, 0.92))  # w16: the compute of the one-step 0.88 T
CHAINS["p1-copy_zeroL-2step16-stack"] = ((1, 4, 0.7), (4, 16, 0.85))  # the depth axis: 16 layers
CHAINS["p1-copy_zeroL-2step32-stack"] = ((1, 4, 0.7), (4, 32, 0.85))  # and 32


@dataclasses.dataclass(frozen=True)
class Point:
    width: int = 32
    vocab: int = 512
    layers: int = 8
    T: int = 1500
    seed: int = 1234  # the trainer's default --seed

    def flags(self, data: str, tokenizer: str) -> list[str]:
        return [*BASE, "--hidden-size", str(self.width), "--ffn-hidden-size", str(4 * self.width),
                "--num-attention-heads", str(max(1, self.width // HEAD_DIM)), "--seed", str(self.seed),
                "--eval-interval", str(max(25, self.T // 20)), "--data-path", data, "--tokenizer-model", tokenizer]

    @property
    def tag(self) -> str:
        return f"w{self.width}-v{self.vocab}-L{self.layers}-T{self.T}-s{self.seed}"


@dataclasses.dataclass(frozen=True)
class Job:
    point: Point
    run: Run
    extra: tuple[str, ...] = ()
    variant: str | None = None  # recipe variant name (replaces the run's name in the key)
    chain: tuple = ()  # CHAINS: a variant that grows more than once

    @property
    def name(self) -> str:
        return self.variant or self.run.name

    @property
    def key(self) -> str:
        return f"{self.point.tag}-{self.name}"

    def core_seconds(self) -> float:
        p, r = self.point, self.run
        step = STEP_S.get(p.width, 0.22) * p.layers / 8 * (1 + 0.1 * math.log2(p.vocab / 512))
        if self.chain:
            ends = [t for _, _, t in self.chain[1:]] + [1.0]
            return sum(((self.chain[0][2] * self.chain[0][0] / p.layers) if k == 0 else 0)
                       + (end - tau) * dst / p.layers
                       for k, ((_, dst, tau), end) in enumerate(zip(self.chain, ends, strict=True))
                       ) * p.T * step + 40 * len(self.chain)
        if r.source is None:
            return r.iters(p.T) * step + 15
        src = max(r.source, 0.3) / p.layers
        if r.tau is None:
            return r.iters(p.T) * step * src + 15
        return (r.tau * p.T * src + (1 - r.tau) * p.T) * step + 25


@functools.cache
def width_point(width: int) -> Point:
    """Vocabulary scaled with width (~25% embedding share at 8 layers), T for 12 tokens/parameter."""
    from megatron_grow import flops

    point = Point(width=width, vocab=512 * width // 16, layers=8)
    cfg = _cfg(point.flags("demo", "") + ["--num-layers", "8"], [], point.vocab)
    return dataclasses.replace(point, T=int(round(12 * flops.param_count(cfg) / TOKENS_PER_ITER / 25)) * 25)


def plan(axes: list[str], seed: int) -> list[Job]:
    """The jobs of the requested parts, in their order (duplicates kept once)."""
    jobs: list[Job] = []

    def add(point, runs, extra=(), variant=None):
        for r in runs:
            j = Job(point, r, tuple(extra), variant, CHAINS.get((variant or "").partition("+lr")[0], ()))
            if j.key not in {x.key for x in jobs}:
                jobs.append(j)

    for axis in axes:
        if axis not in AXES:
            raise SystemExit(f"--axes {axis!r}: choose from {', '.join(AXES)}")
        AXES[axis](add, seed)
    return jobs


def _T(add, seed):
    for T in (375, 750, 1500, 3000):
        add(Point(T=T, seed=seed), FIXED + GROWN)


def _seeds(add, seed):
    for s in (1, 2):
        add(Point(T=1500, seed=seed + s), [FIXED[0], GROWN[2]])
    for s in (1, 2):  # the recipe variants that won at the default seed, again at two more
        add(Point(T=1500, seed=seed + s), [GROWN[2]], RECIPES["p1-copy_zeroL-0.8-stack"][1], "p1-copy_zeroL-0.8-stack")
        add(Point(T=1500, seed=seed + s), [GROWN[2]], [], "p1-copy_zeroL-2step")


def _depth(add, seed):
    core = [r for r in GROWN if r.name in ("p0-random-0.8", "p1-copy_zeroL-0.8")]
    for L in (4, 8, 16):
        add(Point(layers=L, T=1500, seed=seed), [FIXED[0], FIXED[2], *core])


def _width(add, seed):
    for w in (16, 32, 64):  # growth at 0.8 T first: the 0.5 T runs are the ones to drop when time is short
        add(dataclasses.replace(width_point(w), seed=seed), FIXED + sorted(GROWN, key=lambda r: -r.tau))


def _tmix(add, seed):
    p = Point(T=1500, seed=seed)
    add(p, [FIXED[0], *(Run(f"p0-random-{tau}", 0, tau) for tau in TMIX_TAUS)])
    add(p, [Run("fixed-cos", None, schedule="cosine"),
            *(Run(f"p0-random-{tau}-cos", 0, tau, schedule="cosine") for tau in TMIX_TAUS)])


def _recipe(add, seed):
    p = Point(T=1500, seed=seed)
    add(p, FIXED + GROWN)
    for name, (base, extra) in RECIPES.items():
        add(p, [next(r for r in FIXED + GROWN if r.name == base)], extra, name)


def _w16(add, seed):
    """The width-16 point, where growth came within 1%: its seed noise, the stack placement, and a
    later tau that brings the 1-layer recipe under 0.45x compute in the total-parameter convention."""
    p = dataclasses.replace(width_point(16), seed=seed)
    for s in (1, 2):
        add(dataclasses.replace(p, seed=seed + s), [FIXED[0], GROWN[2]])
    add(p, [GROWN[2]], RECIPES["p1-copy_zeroL-0.8-stack"][1], "p1-copy_zeroL-0.8-stack")
    late = Run("p1-copy_zeroL-0.88", 1, 0.88, "copy_zeroL")
    for s in (0, 1, 2):
        q = dataclasses.replace(p, seed=seed + s)
        add(q, [late])
        add(q, [late], RECIPES["p1-copy_zeroL-0.8-stack"][1], "p1-copy_zeroL-0.88-stack")
        add(q, [GROWN[2]], [], "p1-copy_zeroL-2step-late")
    # is the fixed run's LR (tuned at width 32) still right at width 16, T 225?
    for lr in ("5e-3", "2e-2", "4e-2", "8e-2"):
        add(p, [FIXED[0]], ["--lr", lr], f"fixed+lr{lr}")
        add(p, [late], ["--lr", lr, *RECIPES["p1-copy_zeroL-0.8-stack"][1]], f"p1-copy_zeroL-0.88-stack+lr{lr}")


def _twostep(add, seed):
    """The two-step growth (1 -> 4 -> 8 layers), which won at T 1500, along the T and width axes."""
    for T in (375, 750, 3000):
        add(Point(T=T, seed=seed), [GROWN[2]], [], "p1-copy_zeroL-2step")
    for w in (16, 32, 64):
        add(dataclasses.replace(width_point(w), seed=seed), [GROWN[2]], [], "p1-copy_zeroL-2step")


def _precision(add, seed):
    """fp32 vs bf16 (issue 24): the fixed run and the 1 -> 8 copy_zeroL growth at 0.8 T, each in both
    precisions, at three seeds (T 600: no stored run of another init draw at these points)."""
    for s in (0, 1, 2):
        p = Point(T=PRECISION_T, seed=seed + s)
        add(p, [FIXED[0], GROWN[2]])
        add(p, [FIXED[0]], ["--bf16"], "fixed+bf16")
        add(p, [GROWN[2]], ["--bf16"], "p1-copy_zeroL-0.8+bf16")


# The control (issue 25): the never-grown sources and the depths between them and the target, each
# on its own schedule at T and shorter (the frontier is the Pareto front over depths), and the LR of
# every run swept over 8x, so that each side is compared at its own best LR. A never-grown run of
# depth d is the fixed-size run of the point with d layers (w32-v512-L2-T1500-s1234-fixed+lr1e-2), so
# the targets of one width, vocabulary, length and seed share them. Every control run is new (its
# key names its LR, 1e-2 too): the study's earlier runs predate the tiled init, another init draw.
CONTROL_LRS = ("1e-2", "2e-2", "5e-3", "4e-2")
CONTROL_GROWN = ("p1-copy_zeroL-0.8-stack", "p1-copy_zeroL-2step-stack")
BETWEEN = (2, 4, 8, 16)  # the depths between the sources (0, 1) and a target (at 32: up to 16)


def control_runs(p: Point, grown: list[tuple[Run, tuple[str, ...], str]]) -> list[tuple[Point, Run, tuple, str]]:
    """(point, run, extra flags, variant name) of the control at point ``p`` with the growth recipes
    ``grown``, in the order to run them: the fixed run and the sources first (the depth gain), then
    growth, then the depths between and the shorter runs of the frontier."""
    at = lambda d: dataclasses.replace(p, layers=d)  # noqa: E731
    between = [d for d in BETWEEN if d < p.layers]
    return ([(p, FIXED[0], (), None), (at(0), FIXED[0], (), None), (at(1), FIXED[0], (), None)]
            + [(p, run, extra, variant) for run, extra, variant in grown]
            + [(at(d), FIXED[0], (), None) for d in between] + [(p, FIXED[1], (), None), (p, FIXED[2], (), None)]
            + [(at(d), short, (), None) for d in (1, *between) for short in FIXED[1:]])


def control_points(seed: int) -> list[tuple[Point, list, tuple[str, ...]]]:
    """The points under control with their growth recipes and LRs: the study's w32 points at T 1500 and
    750 (the recommended recipes), 4, 16 and 32 layers at T 1500 (the depth axis), T 375 and 3000 at 8
    layers (the T axis), and the w16, T 225 point where the study had growth reach the fixed run (its recipe)."""
    recipe = lambda v: (next(r for r in GROWN if r.name == RECIPES[v][0]), tuple(RECIPES[v][1]), v)  # noqa: E731
    stack = tuple(RECIPES["p1-copy_zeroL-0.8-stack"][1])
    p0 = (GROWN[0], (), None)  # the paper's recipe: from 0 layers, random init, at 0.8 T
    two_step = lambda L: (GROWN[2], stack, f"p1-copy_zeroL-2step{L}-stack")  # noqa: E731  1 -> 4 -> L (CHAINS)
    return [(Point(T=1500, seed=seed), [*(recipe(v) for v in CONTROL_GROWN), p0], CONTROL_LRS),
            (Point(T=750, seed=seed), [recipe(v) for v in CONTROL_GROWN], CONTROL_LRS),
            (Point(layers=16, T=1500, seed=seed), [recipe("p1-copy_zeroL-0.8-stack"), two_step(16), p0], CONTROL_LRS),
            (dataclasses.replace(width_point(16), seed=seed),
             [(Run("p1-copy_zeroL-0.88", 1, 0.88, "copy_zeroL"), stack, "p1-copy_zeroL-0.88-stack"),
              recipe("p1-copy_zeroL-0.8-stack")], (*CONTROL_LRS, "8e-2")),  # (narrow: its best LRs are higher)
            # the depth axis at T 1500 (4 layers shares its runs with the others) and the T axis at 8 layers
            (Point(layers=4, T=1500, seed=seed), [recipe("p1-copy_zeroL-0.8-stack"), p0], CONTROL_LRS),
            (Point(T=375, seed=seed), [recipe(v) for v in CONTROL_GROWN], CONTROL_LRS),
            (Point(layers=32, T=1500, seed=seed), [recipe("p1-copy_zeroL-0.8-stack"), two_step(32), p0], CONTROL_LRS),
            (Point(T=3000, seed=seed), [recipe(v) for v in CONTROL_GROWN], CONTROL_LRS)]


def _control(add, seed):
    for p, grown, lrs in control_points(seed):
        for point, run, extra, variant in control_runs(p, grown):
            for lr in swept(point, run, extra, variant or run.name, lrs):  # (an edge best gains the next LR)
                add(point, [run], [*extra, "--lr", lr], f"{variant or run.name}+lr{lr}")


# The width axis at tuned LRs (issue 25, item 2): one length and vocabulary at every width, so that only the
# width changes; the 8-layer fixed run, its never-grown 1-layer source and the recommended growth (1 -> 8
# layers at 0.8 T, stack) each over an LR sweep of 8x, in both Muon scale modes. A sweep whose best LR is
# at an edge gains the next LR outward (up to EXTEND times) on the next pass, so the best is interior.
WIDTH_LR_T = 500
WIDTHS = (16, 32, 64, 128)
BF16_FROM = 128  # widths from here on train in bf16 (--bf16: ~1.5x faster on these cores, issue 24)
# (spectral: the sweeps at widths 16-64 found 2.5e-2 to 5e-2 best and 2e-1, 4e-1 diverged, so they start at 1.25e-2)
SCALE_LRS = {"match_adamw": ("5e-3", "1e-2", "2e-2", "4e-2"), "spectral": ("1.25e-2", "2.5e-2", "5e-2", "1e-1")}
EXTEND = 2


def lr_str(x: float) -> str:
    """An LR as the study's keys write it: 0.08 -> '8e-2', 0.0025 -> '2.5e-3'."""
    e = math.floor(math.log10(x) + 1e-9)
    return f"{round(x / 10 ** e, 6):g}e{e}"


def swept(point: Point, run: Run, extra: tuple[str, ...], name: str, lrs: tuple[str, ...]) -> list[str]:
    """The LRs of a sweep: ``lrs``, and while every one is stored and the best sits at an edge, the
    next one beyond it (double or half), at most EXTEND more."""
    lrs = list(lrs)
    for _ in range(EXTEND):
        stored = {lr: load(Job(point, run, (), f"{name}+lr{lr}")) for lr in lrs}
        if not all(stored.values()):
            break
        by = sorted(lrs, key=float)
        best = min(by, key=lambda lr: stored[lr]["val_loss"])
        if best not in (by[0], by[-1]):
            break
        lrs.append(lr_str(float(best) * (2 if best == by[-1] else 0.5)))
    return lrs


def width_lr_runs(seed: int) -> list[tuple[str, Point, Run, tuple[str, ...], str]]:
    """(scale mode, point, run, extra flags, name without LR) of the width axis at tuned LRs, fixed
    runs first (the LR transfer), then the sources, then growth."""
    stack = tuple(RECIPES["p1-copy_zeroL-0.8-stack"][1])
    out = []
    for kind in ("fixed", "src", "grown"):
        for mode in SCALE_LRS:
            for w in WIDTHS:
                p = Point(width=w, T=WIDTH_LR_T, seed=seed)
                tail = ("" if mode == "match_adamw" else "+spectral") + ("+bf16" if w >= BF16_FROM else "")
                bf16 = ("--bf16",) if w >= BF16_FROM else ()
                if kind == "fixed":
                    out.append((mode, p, FIXED[0], bf16, "fixed" + tail))
                elif kind == "src":
                    out.append((mode, dataclasses.replace(p, layers=1), FIXED[0], bf16, "fixed" + tail))
                else:
                    out.append((mode, p, GROWN[2], stack + bf16, "p1-copy_zeroL-0.8-stack" + tail))
    return out


def _widthlr(add, seed):
    for mode, point, run, extra, name in width_lr_runs(seed):
        for lr in swept(point, run, extra, name, SCALE_LRS[mode]):
            add(point, [run], [*extra, "--muon-scale-mode", mode, "--lr", lr], f"{name}+lr{lr}")


LR_T = (250, 500, 750, 1500)


def _lrT(add, seed):
    """The peak LR against T (the 1/sqrt(T) rule): the 8-layer fixed run at width 32, vocab 512 over T
    in both scale modes (match_adamw at T 750 and 1500 are the control's runs, T 500 the width axis')."""
    for mode, lrs in SCALE_LRS.items():
        name = "fixed" + ("" if mode == "match_adamw" else "+spectral")
        for T in LR_T:
            p = Point(T=T, seed=seed)
            for lr in swept(p, FIXED[0], (), name, lrs):
                add(p, [FIXED[0]], ["--muon-scale-mode", mode, "--lr", lr], f"{name}+lr{lr}")


def _controlseeds(add, seed):
    """Two more seeds at the controlled points of T 1500 (8 and 16 layers), every run of the control at
    the LR its sweep at the base seed found best (a run whose sweep is not yet stored is left out)."""
    for p, grown, lrs in control_points(seed):
        if (p.width, p.T, p.layers) not in ((32, 1500, 8), (32, 1500, 16)):
            continue
        for point, run, extra, variant in control_runs(p, grown):
            name = variant or run.name
            stored = {lr: load(Job(point, run, (), f"{name}+lr{lr}")) for lr in lrs}
            if not all(stored.values()):
                continue
            best = min(lrs, key=lambda lr: stored[lr]["val_loss"])
            for s in (1, 2):
                add(dataclasses.replace(point, seed=seed + s), [run], [*extra, "--lr", best], f"{name}+lr{best}")


PRECISION_T = 600
AXES = {"T": _T, "seeds": _seeds, "depth": _depth, "width": _width, "w16": _w16, "tmix": _tmix, "recipe": _recipe,
        "twostep": _twostep, "precision": _precision, "control": _control, "widthlr": _widthlr,
        "controlseeds": _controlseeds, "lrT": _lrT}


def import_progressive_vs_fixed(path: str, jobs: list[Job]) -> list[str]:
    """Store the runs of a ``benchmarks/progressive_vs_fixed.py --scale cpu`` result (same model, data and
    flags as the w32-v512-L8 point of its T; 2 processes x micro-batch 8 instead of 1 x 16, which gives the
    same losses to fp32 rounding) as runs of this study, marked ``imported_from``. They carry no
    per-iteration train curve, so their t_mix is the one that benchmark computed. Returns the keys stored."""
    with open(path) as f:
        res = json.load(f)
    meta = res["meta"]
    if meta["scale"] != "cpu" or meta["optimizer"] != "muon-nsgd" or meta["layers"] != 8:
        raise SystemExit(f"--import {path}: only a --scale cpu, muon-nsgd, 8-layer result matches this study")
    point = Point(T=meta["train_iters"])
    stored = []
    for row in res["runs"]:
        job = next((j for j in jobs if j.point == point and j.name == row["name"] and not j.extra), None)
        if job is None and row["source_layers"] is None and row["schedule"] == "wsd" and row["name"].endswith("T"):
            job = Job(point, Run(row["name"], None, length=float(row["name"][len("fixed-"):-1])))  # fixed-0.4T
        if job is None or load(job):
            continue
        out = {k: v for k, v in row.items() if not k.endswith("_ratio") and k != "gap_pct"}
        out.update(key=job.key, point=dataclasses.asdict(point), extra=[], imported_from=os.path.relpath(path, RESULTS))
        _store(job, out)
        stored.append(job.key)
    return stored


def extra_stored(jobs: list[Job]) -> list[dict]:
    """Stored runs at the points of ``jobs`` that no job names (imported extra frontier points)."""
    keys, tags = {j.key for j in jobs}, {j.point.tag for j in jobs}
    out = []
    for fn in sorted(os.listdir(os.path.join(OUT, "runs"))) if os.path.isdir(os.path.join(OUT, "runs")) else []:
        with open(os.path.join(OUT, "runs", fn)) as f:
            r = json.load(f)
        if r["key"] not in keys and Point(**r["point"]).tag in tags:
            out.append(r)
    return out


def _store(job: Job, out: dict) -> None:
    os.makedirs(os.path.dirname(run_path(job)), exist_ok=True)
    with open(run_path(job) + ".tmp", "w") as f:
        json.dump(out, f)
    os.replace(run_path(job) + ".tmp", run_path(job))


def run_path(job: Job) -> str:
    return os.path.join(OUT, "runs", job.key + ".json")


def load(job: Job) -> dict | None:
    path = run_path(job)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def execute(job: Job, data: dict[int, tuple[str, str]]) -> dict:
    """Train one job (1 process) and store its summary."""
    p = job.point
    flags = [*p.flags(*data[p.vocab]), *(chain_flags(job) if job.chain else job.run.flags(p.layers, p.T)), *job.extra]
    work = os.path.join(OUT, "work")
    metrics = os.path.join(work, job.key + ".jsonl")
    res = train(flags, metrics, nproc=1, timeout=4 * 3600)
    rec, wall = res["records"], res["wall_s"]
    out = summarise(job.run, rec, None, wall)
    out.update(name=job.name, key=job.key, point=dataclasses.asdict(p), extra=list(job.extra), flags=flags,
               train_curve=[[r["iter"], round(r["lm_loss"], 5)] for r in rec if "lm_loss" in r])
    if job.chain:  # tau and the growth event of the last growth (to full depth); every growth listed
        events = [r for r in rec if r.get("event") == "grow"]
        out.update(chain=[list(c) for c in job.chain], tau_fraction=job.chain[-1][2], grow_event=events[-1],
                   grow_events=events)
    _store(job, out)
    os.remove(metrics)
    os.remove(metrics + ".log")
    return out


def chain_flags(job: Job) -> list[str]:
    """A variant that grows more than once, as one run: --grow-schedule with each growth's depth and
    iteration (it gives the losses of the chained runs the study stored before it existed: the tests
    check --grow-schedule against the same growths done step by step with resumes between them)."""
    p = job.point
    steps = ",".join(f"{dst}@{round(tau * p.T)}" for _, dst, tau in job.chain)
    return ["--lr-decay-style", job.run.schedule, "--train-iters", str(p.T), "--num-layers", str(job.chain[0][0]),
            "--grow-schedule", steps, "--grow-init", job.run.init]


# ---------------------------------------------------------------------------------------------- analysis

def frontier(fixed: list[tuple[float, float]], c: float) -> float:
    """Held-out loss of the fixed-size model at relative compute c: log-loss linear in log-compute
    between the measured fixed runs (extrapolated along the nearest segment)."""
    pts = sorted(fixed)
    if len(pts) == 1:
        return pts[0][1]
    i = max(0, min(len(pts) - 2, sum(1 for x, _ in pts if x <= c) - 1))
    (x0, y0), (x1, y1) = pts[i], pts[i + 1]
    t = (math.log(c) - math.log(x0)) / (math.log(x1) - math.log(x0))
    return math.exp(math.log(y0) + t * (math.log(y1) - math.log(y0)))


def point_table(results: list[dict], conv: str = "cum_flops_6n") -> list[dict]:
    """Gaps of every run at its point against the fixed run and the fixed-size frontier."""
    by_point: dict[str, dict[str, dict]] = {}
    for r in results:
        by_point.setdefault(Point(**r["point"]).tag, {})[r["name"]] = r
    rows = []
    for tag, runs in by_point.items():
        for sched in ("wsd", "cosine"):
            ref = runs.get("fixed" if sched == "wsd" else "fixed-cos")
            if ref is None:
                continue
            fixed = [(r[conv] / ref[conv], r["val_loss"]) for r in runs.values()
                     if r["source_layers"] is None and r["schedule"] == sched and not r.get("extra")]
            for r in runs.values():
                if r["schedule"] != sched:
                    continue
                c = r[conv] / ref[conv]
                row = {"point": tag, **r["point"], "name": r["name"], "schedule": sched, "val_loss": r["val_loss"],
                       "gap": r["val_loss"] / ref["val_loss"] - 1, "compute": c,
                       "compute_exact": r["cum_flops"] / ref["cum_flops"],
                       "compute_nonemb": r["cum_flops_6n_nonemb"] / ref["cum_flops_6n_nonemb"],
                       "wall": r["train_seconds"] / ref["train_seconds"], "tau": r["tau_fraction"],
                       "frontier_points": len(fixed)}
                if len(fixed) >= 2 and r["source_layers"] is not None:
                    row["gap_matched"] = r["val_loss"] / frontier(fixed, c) - 1
                if r["tau_fraction"] is not None:
                    from megatron_grow.growth.tau import mixing_time

                    imported = "train_curve" not in r or "train_curve" not in ref
                    mix = r.get("mixing") if imported else mixing_time(_records(ref), _records(r), 0.01, "lm_loss")
                    row["t_mix"] = mix["t_mix"] if mix else None
                    row["tau_iter"] = r["grow_event"]["iter"]
                    if not imported:
                        row["gap_after"] = train_gap_after(ref, r, row["tau_iter"])
                    row["loss_jump"] = r["grow_event"]["loss_after"] - r["grow_event"]["loss_before"]
                rows.append(row)
    return rows


AFTER = (150, 300, 600)  # iterations after growth at which the train-loss gap is reported


def train_gap_after(ref: dict, run: dict, tau: int, window: int = 10) -> dict[str, float]:
    """Relative gap of the run's train loss to the reference's (both a trailing mean of ``window``
    iterations) k iterations after growth, for each k of AFTER that lies inside the run: how fast a
    grown model catches up, comparable across tau even where it never mixes."""
    f, g = dict(map(tuple, ref["train_curve"])), dict(map(tuple, run["train_curve"]))
    out = {}
    for k in AFTER:
        its = [i for i in range(tau + k - window + 1, tau + k + 1) if i in f and i in g]
        if len(its) == window:
            out[str(k)] = sum(g[i] for i in its) / sum(f[i] for i in its) - 1
    return out


def _records(r: dict) -> list[dict]:
    out = [{"iter": i, "lm_loss": v} for i, v in r["train_curve"]]
    if r.get("grow_event"):
        out.append(r["grow_event"])
    return out


def seed_noise(rows: list[dict]) -> dict:
    """Standard deviation over seeds of the fixed run's loss (relative) and of the gaps of the
    progressive settings measured at several seeds."""
    import statistics

    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        key = (r["width"], r["vocab"], r["layers"], r["T"], r["name"], r["schedule"])
        groups.setdefault(key, []).append(r)
    out = {"fixed": {}, "gap": {}}
    for (w, v, L, T, name, _), rs in groups.items():
        if len(rs) < 3:
            continue
        at = f"w{w} v{v} L{L} T{T}"
        if name == "fixed":
            vals = [r["val_loss"] for r in rs]
            out["fixed"][at] = {"rel": statistics.stdev(vals) / statistics.mean(vals), "values": vals}
        else:
            out["gap"][f"{name} at {at}"] = {"sd": statistics.stdev(r["gap"] for r in rs),
                                             "values": [r["gap"] for r in rs]}
    gaps = [g["sd"] for g in out["gap"].values()]
    rel = [f["rel"] for f in out["fixed"].values()]
    # the noise of one gap: the largest measured, else two independent runs' worth of the fixed loss noise
    out["sigma_gap"] = max(gaps) if gaps else math.sqrt(2) * max(rel, default=0.005)
    return out


def fit_law(xs: list[float], gaps: list[float], sigma: float, targets=(0.01, 0.005), n_boot: int = 2000) -> dict:
    """log gap = log a - b log x by least squares; where it crosses each target gap, with a 68% interval
    from refits of the gaps perturbed by the seed noise ``sigma``. Needs >= 3 points with positive gaps."""
    import numpy as np

    x, g = np.log(np.asarray(xs, float)), np.asarray(gaps, float)
    ok = g > 0
    if ok.sum() < 3:
        return {"n": int(ok.sum()), "note": "fewer than 3 positive gaps: no law"}

    def fit(gv):
        keep = gv > 0
        A = np.stack([np.ones(keep.sum()), -x[keep]], 1)
        (la, b), *_ = np.linalg.lstsq(A, np.log(gv[keep]), rcond=None)
        return la, b

    la, b = fit(g)
    rng = np.random.default_rng(0)
    boot = [fit(g + rng.normal(0, sigma, g.shape)) for _ in range(n_boot)]
    out = {"n": int(ok.sum()), "a": float(math.exp(la)), "b": float(b),
           "b_68": [float(np.percentile([bb for _, bb in boot], q)) for q in (16, 84)]}
    for t in targets:
        def cross(la_, b_, t=t):
            e = (la_ - math.log(t)) / b_ if abs(b_) > 1e-6 else math.inf
            return math.exp(e) if abs(e) < 50 else (math.inf if e > 0 else 0.0)
        xs_b = sorted(cross(*p) for p in boot)
        out[f"x_at_{t:g}"] = cross(la, b)
        out[f"x_at_{t:g}_68"] = [xs_b[int(0.16 * n_boot)], xs_b[int(0.84 * n_boot)]]
    return out


def fit_breakeven(xs: list[float], gaps: list[float], sigma: float, n_boot: int = 2000) -> dict:
    """gap_matched = c0 + c1 log x by least squares (it changes sign, so no power law): where it crosses 0
    (growth pays on the side where it is negative), with a 68% interval from refits under the seed noise."""
    import numpy as np

    x, g = np.log(np.asarray(xs, float)), np.asarray(gaps, float)
    A = np.stack([np.ones_like(x), x], 1)

    def fit(gv):
        (c0, c1), *_ = np.linalg.lstsq(A, gv, rcond=None)
        return c0, c1

    def zero(c0, c1):
        return math.exp(-c0 / c1) if abs(c1) > 1e-9 and abs(c0 / c1) < 50 else math.inf

    c0, c1 = fit(g)
    rng = np.random.default_rng(0)
    zs = sorted(zero(*fit(g + rng.normal(0, sigma, g.shape))) for _ in range(n_boot))
    return {"n": len(xs), "c0": float(c0), "c1": float(c1), "x_at_0": zero(c0, c1),
            "x_at_0_68": [zs[int(0.16 * n_boot)], zs[int(0.84 * n_boot)]]}


def laws(rows: list[dict], sigma: float, seed: int) -> dict:
    axes = {"T": dict(width=32, vocab=512, layers=8), "layers": dict(width=32, vocab=512, T=1500),
            "width": None}
    out = {}
    for axis, fixed in axes.items():
        for name in LAW_RUNS:
            for kind in ("gap", "gap_matched"):
                if kind == "gap_matched" and name.startswith("fixed"):
                    continue
                sel = [r for r in rows if r["name"] == name and r["schedule"] == "wsd" and r["seed"] == seed
                       and kind in r and (fixed is None and width_point(r["width"]).vocab == r["vocab"]
                                          and width_point(r["width"]).T == r["T"]
                                          or fixed is not None and all(r[k] == v for k, v in fixed.items()))]
                xs = {r[axis]: r[kind] for r in sel}
                if len(xs) < 3:
                    continue
                pts = sorted(xs.items())
                fitter = fit_law if kind == "gap" else fit_breakeven
                law = fitter([p[0] for p in pts], [p[1] for p in pts], sigma)
                out[f"{axis}/{name}/{kind}"] = {"axis": axis, "name": name, "kind": kind,
                                               "points": pts, **law}
    return out


def markdown(rows: list[dict], noise: dict, fitted: dict, meta: dict) -> str:
    def pct(x):
        return "-" if x is None else f"{100 * x:+.2f}%"

    lines = ["# Growth scaling study (CPU)", "",
             f"{meta['runs']} runs stored; GPT2-shaped, head dim 16, seq 128, {TOKENS_PER_ITER} tokens/iteration, "
             "Muon-NSGD LR 1e-2, demo corpus. gap: vs the fixed run of the point; gap_matched: vs the fixed-size "
             "frontier at the same compute (6N, all parameters); negative gap_matched = growth wins.", "",
             "## Runs by point", "",
             "| point | run | val loss | gap | compute 6N | exact | non-emb | gap_matched | t_mix | jump at growth |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["width"], r["vocab"], r["layers"], r["T"], r["seed"], r["schedule"],
                                          r["name"])):
        tm = "-" if r.get("tau") is None else ("never" if r.get("t_mix") is None else str(r["t_mix"]))
        jump = "-" if r.get("loss_jump") is None else f"{r['loss_jump']:+.3f}"
        lines.append(f"| {r['point']}{'' if r['schedule'] == 'wsd' else ' cos'} | {r['name']} | {r['val_loss']:.4f} | "
                     f"{pct(r['gap'])} | {r['compute']:.3f} | {r['compute_exact']:.3f} | {r['compute_nonemb']:.3f} | "
                     f"{pct(r.get('gap_matched'))} | {tm} | {jump} |")
    lines += ["", "## Seed noise", ""]
    for at, f in noise["fixed"].items():
        lines.append(f"At {at}: fixed-run held-out loss over 3 seeds {', '.join(f'{v:.4f}' for v in f['values'])} "
                     f"(relative sd {100 * f['rel']:.2f}%).")
    for name, g in noise["gap"].items():
        lines.append(f"Gap of {name} over 3 seeds: {', '.join(pct(v) for v in g['values'])} (sd {100 * g['sd']:.2f} "
                     "points).")
    lines.append(f"Error bars and law intervals use sigma_gap = {100 * noise['sigma_gap']:.2f} points.")
    tmix = {(r["tau"], r["schedule"]): r for r in rows if r["name"].startswith("p0-random-")
            and r["point"] == Point(T=1500, seed=meta["seed"]).tag and r["name"].count("-") <= 3
            and r["tau"] in TMIX_TAUS}
    if tmix:
        lines += ["", "## t_mix vs tau (p0-random, w32 L8 T1500; t_mix: iterations after tau until the smoothed "
                  "train loss stays within 1% of the fixed run's of the same schedule; train gap +k: that gap k "
                  "iterations after tau)", "",
                  "| tau | schedule | t_mix | train gap " + " | ".join(f"+{k}" for k in AFTER) + " | final val gap |",
                  "|---:|---|---:|" + "---:|" * (len(AFTER) + 1)]
        for sched in ("wsd", "cosine"):
            for tau in TMIX_TAUS:
                r = tmix.get((tau, sched))
                if r is None:
                    continue
                after = [pct(r.get("gap_after", {}).get(str(k))) for k in AFTER]
                lines.append(f"| {tau}T | {sched} | {'never' if r.get('t_mix') is None else r['t_mix']} | "
                             + " | ".join(after) + f" | {pct(r['gap'])} |")
    base_tag = Point(T=1500, seed=meta["seed"]).tag
    at = {r["name"]: r for r in rows if r["point"] == base_tag and r["schedule"] == "wsd"}
    by_seed = {(r["name"], r["seed"]): r for r in rows if (r["width"], r["vocab"], r["layers"], r["T"]) ==
               (32, 512, 8, 1500) and r["schedule"] == "wsd"}
    variants = [(name, base) for name, (base, _) in RECIPES.items() if name in at and base in at]
    if variants:
        sigma = noise["sigma_gap"]
        lines += ["", f"## Recipe variants (w32 L8 T1500), each against the same fixed run; kept only if its gap "
                  f"beats its base's by more than the seed noise ({100 * sigma:.2f} points; over n seeds, "
                  "the mean paired difference against sigma / sqrt(n))", "",
                  "| variant | flags | val loss | gap | gap_matched | vs base (seeds) | verdict |",
                  "|---|---|---:|---:|---:|---:|---|"]
        for name, base in variants:
            r = at[name]
            seeds = sorted(s for (n, s) in by_seed if n == name and (base, s) in by_seed)
            d = sum(by_seed[(name, s)]["gap"] - by_seed[(base, s)]["gap"] for s in seeds) / len(seeds)
            bar = sigma / math.sqrt(len(seeds))
            verdict = "wins" if d < -bar else "loses" if d > bar else "no difference"
            how = " ".join(RECIPES[name][1]) + "".join(f" {a}->{b} at {t}T" for a, b, t in CHAINS.get(name, ()))
            lines.append(f"| {name} | `{how.strip()}` | {r['val_loss']:.4f} | {pct(r['gap'])} | "
                         f"{pct(r.get('gap_matched'))} | {100 * d:+.2f} pts vs {base} ({len(seeds)}) | {verdict} |")
    lines += ["", "## Laws: gap = a x^-b", "",
              "| axis | run | gap kind | points | a | b (68%) | x at 1% (68%) | x at 0.5% (68%) |",
              "|---|---|---|---|---:|---:|---:|---:|"]

    def x(v):
        return "inf" if v == math.inf else f"{v:.3g}"

    for law in fitted.values():
        pts = ", ".join(f"{p[0]:g}: {pct(p[1])}" for p in law["points"])
        if law["kind"] == "gap_matched":
            continue
        if "a" not in law:
            lines.append(f"| {law['axis']} | {law['name']} | {law['kind']} | {pts} | - | - | {law['note']} | |")
            continue
        lines.append(f"| {law['axis']} | {law['name']} | {law['kind']} | {pts} | {law['a']:.3g} | {law['b']:.2f} "
                     f"({law['b_68'][0]:.2f}..{law['b_68'][1]:.2f}) | {x(law['x_at_0.01'])} "
                     f"({x(law['x_at_0.01_68'][0])}..{x(law['x_at_0.01_68'][1])}) | {x(law['x_at_0.005'])} "
                     f"({x(law['x_at_0.005_68'][0])}..{x(law['x_at_0.005_68'][1])}) |")
    lines += ["", "## Break-even: gap_matched = c0 + c1 ln x (growth pays where it is negative)", "",
              "| axis | run | points | c0 | c1 | gap_matched = 0 at x (68%) |", "|---|---|---|---:|---:|---:|"]
    for law in fitted.values():
        if law["kind"] != "gap_matched":
            continue
        pts = ", ".join(f"{p[0]:g}: {pct(p[1])}" for p in law["points"])
        lines.append(f"| {law['axis']} | {law['name']} | {pts} | {100 * law['c0']:+.2f}% | {100 * law['c1']:+.2f}% | "
                     f"{x(law['x_at_0'])} ({x(law['x_at_0_68'][0])}..{x(law['x_at_0_68'][1])}) |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], fitted: dict, sigma: float, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (matplotlib.ticker below)
    import numpy as np

    axes_names = [a for a in ("T", "layers", "width") if any(v["axis"] == a for v in fitted.values())]
    fig, axes = plt.subplots(2, max(1, len(axes_names)), figsize=(5.5 * max(1, len(axes_names)), 9), squeeze=False)
    colors = dict(zip(LAW_RUNS, plt.get_cmap("tab10").colors, strict=False))
    for j, axis in enumerate(axes_names):
        for i, kind in enumerate(("gap", "gap_matched")):
            ax = axes[i][j]
            for law in fitted.values():
                if law["axis"] != axis or law["kind"] != kind:
                    continue
                xs, ys = zip(*law["points"], strict=True)
                c = colors[law["name"]]
                ax.errorbar(xs, [100 * y for y in ys], yerr=100 * sigma, fmt="o", color=c, label=law["name"],
                            capsize=3)
                grid = np.geomspace(min(xs) / 2, max(xs) * 4, 50)
                if "a" in law:
                    ax.plot(grid, 100 * law["a"] * grid ** -law["b"], "-", color=c, lw=1)
                if "c1" in law:
                    ax.plot(grid, 100 * (law["c0"] + law["c1"] * np.log(grid)), "-", color=c, lw=1)
            ax.axhline(1, color="k", ls=":", lw=0.8)
            ax.axhline(0.5, color="k", ls="--", lw=0.8)
            ax.axhline(0, color="grey", lw=0.8)
            ax.set_xscale("log")
            xs_all = sorted({p[0] for law in fitted.values() if law["axis"] == axis for p in law["points"]})
            ax.set_xticks(xs_all, [f"{v:g}" for v in xs_all])
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            if kind == "gap":
                ax.set_yscale("log")
                ax.set_ylim(0.3, 200)  # error bars below zero would stretch a log axis
            ax.set_xlabel({"T": "iterations T (2048 tokens each)", "layers": "target depth L",
                           "width": "width (vocab scaled, 12 tokens/param)"}[axis])
            ax.set_ylabel("gap vs fixed (%)" if kind == "gap" else "gap vs fixed-size frontier at equal compute (%)")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_frontiers(rows: list[dict], path: str) -> None:
    """Held-out loss vs compute (6N, relative to the fixed run) at each point of the T and depth axes:
    the fixed-size frontier as a line, each grown run as a marker (below the line: growth pays)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = sorted({(r["layers"], r["T"], r["point"]) for r in rows if r["width"] == 32 and r["vocab"] == 512
                     and r["seed"] == Point().seed and r["frontier_points"] >= 3 and r["schedule"] == "wsd"})
    if not points:
        return
    fig, axes = plt.subplots(1, len(points), figsize=(4 * len(points), 4), squeeze=False)
    colors = dict(zip(LAW_RUNS, plt.get_cmap("tab10").colors, strict=False))
    for ax, (L, T, tag) in zip(axes[0], points, strict=False):
        at = [r for r in rows if r["point"] == tag and r["schedule"] == "wsd"]
        fixed = sorted((r["compute"], r["val_loss"]) for r in at if r["name"] in {f.name for f in FIXED})
        ax.plot(*zip(*fixed, strict=True), "k-o", label="fixed-size (0.35, 0.6, 1.0 T)")
        for r in at:
            if r["name"] in colors and r["name"] not in {f.name for f in FIXED}:
                ax.plot(r["compute"], r["val_loss"], "s", color=colors[r["name"]], label=r["name"])
        ax.set_title(f"L{L}, T {T}")
        ax.set_xlabel("compute / fixed run's (6N, all params)")
        ax.set_ylabel("held-out loss")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def precision_summary(results: list[dict]) -> tuple[dict, str]:
    """The precision axis: per seed the gap (grown / fixed - 1) in fp32 and in bf16, both run in the same
    precision; their mean and spread over seeds, and the per-seed difference of the two gaps."""
    val = {(r["point"]["seed"], r["name"]): r["val_loss"] for r in results}
    seeds = sorted({s for s, _ in val})
    rows = []
    for s in seeds:
        try:
            g32 = val[s, "p1-copy_zeroL-0.8"] / val[s, "fixed"] - 1
            g16 = val[s, "p1-copy_zeroL-0.8+bf16"] / val[s, "fixed+bf16"] - 1
        except KeyError:  # (a run of this seed is missing)
            continue
        rows.append({"seed": s, "fixed_fp32": val[s, "fixed"], "fixed_bf16": val[s, "fixed+bf16"],
                     "gap_fp32": g32, "gap_bf16": g16, "gap_diff": g16 - g32})

    def stats(k):
        xs = [r[k] for r in rows]
        m = sum(xs) / len(xs) if xs else float("nan")
        sd = (sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) ** 0.5 if len(xs) > 1 else float("nan")
        return m, sd

    out = {"rows": rows, **{f"{k}_mean_sd": stats(k) for k in ("gap_fp32", "gap_bf16", "gap_diff")}}
    lines = [f"fp32 vs bf16 at width 32, vocab 512, 8 layers, T {PRECISION_T}: p1-copy_zeroL-0.8 against the fixed "
             "run of its own precision", "", "| seed | fixed fp32 | fixed bf16 | gap fp32 | gap bf16 | bf16 - fp32 |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['seed']} | {r['fixed_fp32']:.4f} | {r['fixed_bf16']:.4f} | {r['gap_fp32']:+.2%} | "
              f"{r['gap_bf16']:+.2%} | {r['gap_diff']:+.2%} |" for r in rows]
    (m32, s32), (m16, s16), (md, sd) = (out[f"{k}_mean_sd"] for k in ("gap_fp32", "gap_bf16", "gap_diff"))
    lines.append(f"| mean (sd over seeds) | | | {m32:+.2%} ({s32:.2%}) | {m16:+.2%} ({s16:.2%}) | "
                 f"{md:+.2%} ({sd:.2%}) |")
    return out, "\n".join(lines) + "\n"


def control_summary(results: list[dict], conv: str = "cum_flops_6n", sigma: float = 0.018) -> tuple[dict, str]:
    """The control, per point (its laws: control_laws, under the seed noise ``sigma`` of a gap): each
    run's LR curve and best LR (interior or at an edge of the sweep),
    the depth gain (never-grown 1-layer source vs the fixed run, each at its best LR), each growth's
    gap, recovered fraction (L_source - L_grown) / (L_source - L_fixed) and distance to the fixed-size
    frontier: the Pareto front over every depth and length at its best LR, log-loss linear in
    log-compute between its points."""
    family: dict[tuple, list[dict]] = {}  # (width, vocab, T, seed) -> runs of every depth
    for r in results:
        q = r["point"]
        family.setdefault((q["width"], q["vocab"], q["T"], q["seed"]), []).append(r)
    out, lines, tables = {"conv": conv, "points": {}}, [], []
    for rs in family.values():
        targets = sorted({r["point"]["layers"] for r in rs if r["tau_fraction"] is not None or "chain" in r})
        for L in targets:
            runs = []
            for r in rs:
                d = r["point"]["layers"]
                if d == L:
                    runs.append(r)
                elif d < L and r["tau_fraction"] is None and "chain" not in r:  # a never-grown depth
                    runs.append(dict(r, name=r["name"].replace("fixed", f"src-{d}" if d < 2 else f"d{d}", 1)))
            point = Point(**dict(rs[0]["point"], layers=L))
            data, table = _control_point(runs, conv, point.tag)
            out["points"][point.tag] = dict(data, point=dataclasses.asdict(point))
            tables.append((point, table))
    first = {}  # the base seed of each point: its lowest (the other seeds ran at its best LRs)
    for point, _ in tables:
        at = dataclasses.replace(point, seed=0)
        first[at] = min(first.get(at, point.seed), point.seed)
    base = [point for point, _ in tables if first[dataclasses.replace(point, seed=0)] == point.seed]
    lines += [table for point, table in tables if point in base]
    out["seeds"], table = control_seeds(out["points"])
    lines.append(table)
    measured = [g["sd"] for k, g in out["seeds"].items() if len(g["seeds"]) >= 3 and not k.endswith("/depth gain")]
    if measured:  # the seed noise of a distance to the front, measured on controlled points
        sigma = max(measured)
    out["laws"], table = control_laws({p.tag: out["points"][p.tag] for p in base}, sigma)
    return out, "\n".join(lines + [table])


def control_seeds(points: dict[str, dict]) -> tuple[dict, str]:
    """Per controlled point measured at several seeds (the others at the base seed's best LRs): each
    growth's distance to the front and recovered fraction by seed, their mean and standard deviation."""
    import statistics

    groups: dict[tuple, dict[int, dict]] = {}
    for data in points.values():
        q = data.get("point")
        if q and data.get("runs"):
            groups.setdefault((q["width"], q["vocab"], q["layers"], q["T"]), {})[q["seed"]] = data
    out, lines = {}, ["## Seeds at the controlled points (the other seeds at the base seed's best LR of each run)",
                      "", "| point | run | seeds | vs frontier by seed | mean (sd) | recovered by seed | mean |",
                      "|---|---|---|---|---:|---|---:|"]
    for (w, v, L, T), by_seed in sorted(groups.items()):
        if len(by_seed) < 2:
            continue
        names = sorted({r["name"] for d in by_seed.values() for r in d["runs"] if r["grown"]} | {"depth gain"})
        for name in names:
            vals = {}
            for sd, d in sorted(by_seed.items()):
                r = next((r for r in d["runs"] if r["name"] == name), None)
                if name == "depth gain" and d.get("depth_gain") is not None:
                    vals[sd] = (d["depth_gain"], None)
                elif r is not None and "recovered" in r:
                    vals[sd] = (r["vs_frontier"], r["recovered"])
            if len(vals) < 2:
                continue
            xs = [a for a, _ in vals.values()]
            recs = [b for _, b in vals.values() if b is not None]
            g = {"seeds": list(vals), "values": xs, "mean": statistics.mean(xs), "sd": statistics.stdev(xs),
                 "recovered": recs}
            out[f"w{w}-v{v}-L{L}-T{T}/{name}"] = g
            lines.append(f"| w{w} L{L} T{T} | {name} | {', '.join(map(str, vals))} | "
                         f"{', '.join(f'{a:+.2%}' for a in xs)} | {g['mean']:+.2%} ({g['sd']:.2%}) | "
                         + (f"{', '.join(f'{b:.0%}' for b in recs)} | {statistics.mean(recs):.0%} |" if recs
                            else "- | - |"))
    return out, "\n".join(lines) + "\n"


def control_laws(points: dict[str, dict], sigma: float) -> tuple[dict, str]:
    """Laws on the controlled points, along T (width 32, 8 layers) and along depth (width 32, T 1500):
    each growth recipe's distance to the Pareto front and its recovered fraction as c0 + c1 ln x, and
    where they would reach 0 (growth on the front) and 90% recovered, with 68% intervals from refits
    under the seed noise ``sigma`` of a gap (of a recovered fraction: sigma / depth gain)."""
    axes = {"T": ("T", dict(width=32, vocab=512, layers=8)), "depth": ("layers", dict(width=32, vocab=512, T=1500))}
    series: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {}
    for data in points.values():
        q = data.get("point")
        if not q or not data.get("informative"):
            continue
        for axis, (field, fixed) in axes.items():
            if all(q[k] == v for k, v in fixed.items()):
                for r in data["runs"]:
                    if r["grown"] and "recovered" in r:
                        name = re.sub(r"2step\d+", "2step", r["name"])  # 1 -> 4 -> L at every depth
                        series.setdefault((axis, name), []).append(
                            (q[field], r["vs_frontier"], r["recovered"], data["depth_gain"]))
    out, lines = {}, ["## Laws on the controlled points (one seed; each run at its own best LR)", "",
                      f"vs frontier and recovered fraction as c0 + c1 ln x; where they would reach 0 and 90%, with "
                      f"68% intervals from refits under the seed noise (sigma {100 * sigma:.2f} points of a gap; of a "
                      "recovered fraction sigma / depth gain). Where an axis has two points, the line passes "
                      "through both.", "",
                      "| axis | recipe | points (x: vs frontier, recovered) | per doubling of x "
                      "| on the front where (68%) | 90% recovered where (68%) |", "|---|---|---|---:|---:|---:|"]

    def x(v):
        return "never" if v == math.inf else f"{v:.3g}"

    def where(law):  # the side of the crossing where growth does better: below it if it worsens with x
        v, lo, hi = law["x_at_0"], *law["x_at_0_68"]
        if v == math.inf:
            return "never"
        if law["c1"] > 0 and v < 1:
            return "never (worsens with x)"
        return f"x {'<' if law['c1'] > 0 else '>'} {x(v)} ({x(lo)}..{x(hi)})"

    for (axis, name), pts in sorted(series.items()):
        pts.sort()
        if len(pts) < 2:
            continue
        xs = [p[0] for p in pts]
        front = fit_breakeven(xs, [p[1] for p in pts], sigma)
        rec_sigma = sigma / (sum(p[3] for p in pts) / len(pts))
        rec = fit_breakeven(xs, [0.9 - p[2] for p in pts], rec_sigma)
        out[f"{axis}/{name}"] = {"axis": axis, "name": name, "points": pts, "front": front, "recovered_90": rec,
                                 "sigma": sigma, "sigma_recovered": rec_sigma}
        shown = ", ".join(f"{p[0]:g}: {p[1]:+.1%}, {p[2]:.0%}" for p in pts)
        per2 = f"{math.log(2) * front['c1']:+.1%}, {-math.log(2) * rec['c1']:+.0%}"
        lines.append(f"| {axis} | {name} | {shown} | {per2} | {where(front)} | {where(rec)} |")
    return out, "\n".join(lines) + "\n"


def _control_point(results: list[dict], conv: str, tag: str) -> tuple[dict, str]:
    curves: dict[str, dict[float, dict]] = {}
    for r in results:
        base, _, lr = r["name"].partition("+lr")
        curves.setdefault(base, {})[float(lr or 1e-2)] = r
    ref = curves.get("fixed")
    if not ref:
        return {}, f"{tag}: no fixed run yet\n"
    c_ref = next(iter(ref.values()))[conv]
    runs = []
    for base, by_lr in curves.items():
        lrs = sorted(by_lr)
        best = min(lrs, key=lambda x: by_lr[x]["val_loss"])
        r = by_lr[best]
        runs.append({"name": base, "grown": r["tau_fraction"] is not None or "chain" in r,
                     "compute": r[conv] / c_ref, "best_lr": best, "val_loss": r["val_loss"],
                     "interior": lrs[0] < best < lrs[-1], "lrs": lrs,
                     "curve": {f"{x:g}": by_lr[x]["val_loss"] for x in lrs}})
    by = {r["name"]: r for r in runs}
    fixed_pts = sorted((r["compute"], r["val_loss"], r["name"]) for r in runs if not r["grown"])
    pareto = [p for i, p in enumerate(fixed_pts) if all(q[1] > p[1] for q in fixed_pts[:i])]

    def front(c):
        pts = [(x, y) for x, y, _ in pareto]
        return frontier(pts, c) if len(pts) > 1 else pts[0][1]

    fx, src = by["fixed"]["val_loss"], by.get("src-1", {}).get("val_loss")
    gain = src / fx - 1 if src else None
    for r in runs:
        r["gap"] = r["val_loss"] / fx - 1
        r["vs_frontier"] = r["val_loss"] / front(r["compute"]) - 1
        if r["grown"] and src:
            r["recovered"] = (src - r["val_loss"]) / (src - fx)
    out = {"depth_gain": gain, "informative": gain is not None and gain >= 0.03,
           "pareto": [n for _, _, n in pareto], "runs": runs}
    swept = sorted({x for r in runs for x in r["lrs"]})
    lines = [f"{tag} (one seed): every run at its own best LR of {', '.join(f'{x:g}' for x in swept)} (Muon-NSGD, "
             "match_adamw). Depth gain (1-layer never grown vs fixed): "
             + (f"{gain:+.2%}" + ("" if out["informative"] else " (under 3%: uninformative)") if gain is not None
                else "not yet measured") + f". Frontier: Pareto front of {', '.join(out['pareto'])}.", "",
             "| run | compute (6N) | best LR | interior | held-out | gap | recovered | vs frontier | LR curve |",
             "|---|---:|---:|---|---:|---:|---:|---:|---|"]
    for r in sorted(runs, key=lambda r: (r["grown"], -r["compute"])):
        rec = f"{r['recovered']:.0%}" if "recovered" in r else "-"
        curve = ", ".join(f"{k}: {v:.4f}" for k, v in r["curve"].items())
        lines.append(f"| {r['name']} | {r['compute']:.3f} | {r['best_lr']:g} | {'yes' if r['interior'] else 'no'} | "
                     f"{r['val_loss']:.4f} | {r['gap']:+.2%} | {rec} | {r['vs_frontier']:+.2%} | {curve} |")
    return out, "\n".join(lines) + "\n"


def lr_optimum(curve: dict[float, float]) -> float | None:
    """The LR at the vertex of a parabola in log LR through the best swept LR and its two neighbours
    (None where the best is at an edge of the sweep)."""
    import numpy as np

    lrs = sorted(curve)
    i = min(range(len(lrs)), key=lambda k: curve[lrs[k]])
    if i in (0, len(lrs) - 1):
        return None
    x = np.log([lrs[i - 1], lrs[i], lrs[i + 1]])
    a, b, _ = np.polyfit(x, [curve[lrs[k]] for k in (i - 1, i, i + 1)], 2)
    return float(math.exp(-b / (2 * a)))


def _slope(xs: list[float], ys: list[float]) -> float | None:
    """d log y / d log x by least squares (None under 2 points)."""
    import numpy as np

    if len(xs) < 2:
        return None
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def width_lr_summary(results: list[dict], seed: int) -> tuple[dict, str]:
    """The width axis at tuned LRs: per scale mode and width the LR curves of the fixed run, the
    never-grown 1-layer source and the growth; each at its best LR the depth gain, the gap and the
    recovered fraction; whether the fixed run's best LR transfers across width (its fitted optimum,
    and the slope d log LR* / d log width: 0 where it transfers, -1 as AdamW's 1/width)."""
    by_key = {r["key"]: r for r in results}
    out: dict = {"T": WIDTH_LR_T, "modes": {}}
    lines = [f"Width axis at tuned LRs: vocab 512, 8-layer target, T {WIDTH_LR_T} at every width (one seed); every run "
             "at its own best LR; LR*: the parabola vertex in log LR around the best.", ""]
    for mode in SCALE_LRS:
        rows = {}
        for _, point, run, _, name in (x for x in width_lr_runs(seed) if x[0] == mode):
            kind = "grown" if run.tau else "src-1" if point.layers == 1 else "fixed"
            curve = {}
            for key, r in by_key.items():
                if key.startswith(f"{point.tag}-{name}+lr"):
                    curve[float(key.rpartition("+lr")[2])] = r["val_loss"]
            if curve:
                best = min(curve, key=curve.get)
                rows.setdefault(point.width, {})[kind] = {
                    "curve": dict(sorted(curve.items())), "best_lr": best, "val_loss": curve[best],
                    "interior": min(curve) < best < max(curve), "lr_opt": lr_optimum(curve)}
        for k in rows.values():
            if "fixed" in k and "src-1" in k:
                fx, src = k["fixed"]["val_loss"], k["src-1"]["val_loss"]
                k["depth_gain"] = src / fx - 1
                if "grown" in k:
                    k["grown"]["gap"] = k["grown"]["val_loss"] / fx - 1
                    k["grown"]["recovered"] = (src - k["grown"]["val_loss"]) / (src - fx) if src != fx else None
        opt = [(w, k["fixed"]["lr_opt"]) for w, k in sorted(rows.items()) if "fixed" in k and k["fixed"]["lr_opt"]]
        slope = _slope(*zip(*opt, strict=True)) if len(opt) >= 2 else None
        out["modes"][mode] = {"widths": rows, "fixed_lr_opt": opt, "slope": slope}
        lines += [f"### `--muon-scale-mode {mode}`", "",
                  "| width | run | best LR | interior | LR* | held-out | depth gain | gap | recovered | LR curve |",
                  "|---:|---|---:|---|---:|---:|---:|---:|---:|---|"]
        for w, k in sorted(rows.items()):
            for kind in ("fixed", "src-1", "grown"):
                if kind not in k:
                    continue
                r = k[kind]
                gain = f"{k['depth_gain']:+.2%}" if kind == "src-1" and "depth_gain" in k else "-"
                gap = f"{r['gap']:+.2%}" if "gap" in r else "-"
                rec = f"{r['recovered']:.0%}" if r.get("recovered") is not None else "-"
                curve = ", ".join(f"{x:g}: {v:.4f}" for x, v in r["curve"].items())
                lr_opt = f"{r['lr_opt']:.3g}" if r["lr_opt"] else "edge"
                shown_w = f"{w} (bf16)" if w >= BF16_FROM else str(w)
                lines.append(f"| {shown_w} | {kind} | {r['best_lr']:g} | {'yes' if r['interior'] else 'no'} | "
                             f"{lr_opt} | {r['val_loss']:.4f} | {gain} | {gap} | {rec} | {curve} |")
        lines += ["", f"Fixed run's LR* by width: {', '.join(f'{w}: {x:.3g}' for w, x in opt) or '-'}; "
                  + (f"d log LR* / d log width = {slope:+.2f} (0: the LR transfers; -1: it falls as 1/width)."
                     if slope is not None else "slope: not yet measured."), ""]
    # the 1/sqrt(T) rule: the fixed 8-layer run's LR* at width 32 against T (--axes lrT, and the control's)
    out["lr_vs_T"] = {}
    lines += ["### The peak LR against T (width 32, vocab 512, 8 layers; the 1/sqrt(T) rule: slope -0.5)", "",
              "| scale mode | LR* by T | d log LR* / d log T | LR curves |", "|---|---|---:|---|"]
    for mode in SCALE_LRS:
        name = "fixed" + ("" if mode == "match_adamw" else "+spectral")
        by_T: dict[int, dict[float, float]] = {}
        for r in by_key.values():
            q = r["point"]
            if (q["width"], q["vocab"], q["layers"], q["seed"]) == (32, 512, 8, seed) and r["name"].startswith(
                    name + "+lr"):
                by_T.setdefault(q["T"], {})[float(r["name"].rpartition("+lr")[2])] = r["val_loss"]
        opt_T = [(T, lr_optimum(c)) for T, c in sorted(by_T.items()) if len(c) >= 3 and lr_optimum(c)]
        s_T = _slope(*zip(*opt_T, strict=True)) if len(opt_T) >= 2 else None
        out["lr_vs_T"][mode] = {"lr_opt": opt_T, "slope": s_T, "curves": by_T}
        curves = "; ".join(f"T {T}: " + ", ".join(f"{x:g}: {v:.4f}" for x, v in sorted(c.items()))
                           for T, c in sorted(by_T.items()))
        lines.append(f"| {mode} | {', '.join(f'{T}: {x:.3g}' for T, x in opt_T) or '-'} | "
                     f"{'-' if s_T is None else f'{s_T:+.2f}'} | {curves} |")
    return out, "\n".join(lines) + "\n"


def plot_width_lr(data: dict, path: str) -> None:
    """LR curves per scale mode: held-out loss against LR, one colour per width; the fixed run solid,
    the never-grown source dashed, the growth dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(data["modes"])
    fig, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 4.5), squeeze=False)
    colors = dict(zip(WIDTHS, plt.get_cmap("tab10").colors, strict=False))
    for ax, mode in zip(axes[0], modes, strict=True):
        for w, k in data["modes"][mode]["widths"].items():
            for kind, ls in (("fixed", "-o"), ("src-1", "--s"), ("grown", ":^")):
                if kind in k:
                    xs, ys = zip(*k[kind]["curve"].items(), strict=True)
                    ax.plot(xs, ys, ls, color=colors[int(w)], label=f"w{w} {kind}")
        ax.set_xscale("log")
        ax.set_xlabel("peak LR")
        ax.set_ylabel(f"held-out loss (T {data['T']})")
        ax.set_title(f"--muon-scale-mode {mode}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def analyse(results: list[dict], seed: int) -> None:
    rows = point_table(results)
    noise = seed_noise(rows)
    fitted = laws(rows, noise["sigma_gap"], seed)
    meta = {"runs": len(results), "seed": seed}
    stem = os.path.join(RESULTS, "growth_scaling")
    write(stem, {"meta": meta, "noise": noise, "laws": fitted, "rows": rows}, markdown(rows, noise, fitted, meta))
    if fitted:
        plot(rows, fitted, noise["sigma_gap"], stem + ".png")
    plot_frontiers(rows, stem + "_frontier.png")
    print(f"wrote {stem}.json/.md" + (", .png" if fitted else "") + ", _frontier.png")


def run_jobs(todo: list[Job], n: int, t0: float, max_hours: float | None) -> None:
    """Run ``todo``, ``n`` single-process jobs at once, starting none after ``max_hours`` since ``t0``."""
    from megatron_grow.data.corpus import demo_corpus

    os.environ["OMP_NUM_THREADS"] = "1"  # one core per job
    data = {v: demo_corpus(vocab_size=v) for v in sorted({j.point.vocab for j in todo})}
    with cf.ThreadPoolExecutor(n) as pool:
        def one(job):
            if max_hours and time.time() - t0 > 3600 * max_hours:
                return job, None
            return job, execute(job, data)

        for fut in cf.as_completed([pool.submit(one, j) for j in todo]):
            try:
                job, out = fut.result()
            except RuntimeError as e:
                print(f"FAILED: {e}", flush=True)
                continue
            if out is not None:
                print(f"{time.strftime('%H:%M:%S')} {job.key:55s} val {out['val_loss']:.4f} "
                      f"({out['job_wall_s']:.0f}s)", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--axes", default="T,seeds,recipe,depth,tmix,w16,width,twostep",
                    help="comma-separated parts, run in the order given (default: all)")
    ap.add_argument("--jobs", type=int, default=2, help="concurrent single-process runs (one per core)")
    ap.add_argument("--reuse", action="store_true",
                    help="skip runs already stored under benchmarks/results/growth_scaling")
    ap.add_argument("--dry-run", action="store_true", help="list the runs and their expected core-time")
    ap.add_argument("--analyse-only", action="store_true", help="only tables, laws and plots from stored runs")
    ap.add_argument("--max-hours", type=float, default=None, help="start no new run after this many hours")
    ap.add_argument("--import", dest="import_", metavar="JSON",
                    help="first store the runs of a progressive_vs_fixed.py --scale cpu result as this study's")
    args = ap.parse_args(argv)
    seed = Point().seed
    axes = args.axes.split(",")
    jobs = plan(axes, seed)
    if args.import_ and not args.dry_run:
        print(f"imported: {', '.join(import_progressive_vs_fixed(args.import_, jobs)) or 'nothing new'}")
    tried: set[str] = set()
    t0 = time.time()
    while True:  # passes: a finished LR sweep whose best sits at an edge plans its next LR (swept)
        todo = [j for j in jobs if not (args.reuse and load(j)) and j.key not in tried]
        total = sum(j.core_seconds() for j in todo)
        print(f"{len(jobs)} runs, {sum(1 for j in jobs if load(j))} stored; to run: {len(todo)}, "
              f"~{total / 3600:.1f} core-hours (~{total / 3600 / args.jobs:.1f} h with {args.jobs} jobs)")
        for j in todo:
            print(f"  {j.key:55s} ~{j.core_seconds() / 60:.1f} min")
        if args.dry_run or args.analyse_only or not todo:
            break
        run_jobs(todo, args.jobs, t0, args.max_hours)
        tried |= {j.key for j in todo}
        jobs = plan(axes, seed)
    if args.dry_run:
        return
    precision = {j.key for j in plan(["precision"], seed)} if "precision" in axes else set()
    if precision:  # (its own table: these points are not part of the study's laws)
        data, table = precision_summary([r for r in (load(j) for j in jobs if j.key in precision) if r])
        write(os.path.join(RESULTS, "growth_scaling_precision"), data, table)
        print(table)
    control = ({j.key for j in plan(["control", "controlseeds"], seed)}
               if {"control", "controlseeds"} & set(axes) else set())
    if control:  # (its own table, until the study's analysis takes every point's control)
        noise = os.path.join(RESULTS, "growth_scaling.json")  # (the study's measured seed noise of a gap)
        sigma = json.load(open(noise))["noise"]["sigma_gap"] if os.path.exists(noise) else 0.018
        runs = [r for r in (load(j) for j in plan(["control", "controlseeds"], seed)) if r]
        data, table = control_summary(runs, sigma=sigma)
        write(os.path.join(RESULTS, "growth_scaling_control"), data, table)
        print(table)
    lr_axes = ["widthlr", "lrT", "control"]  # (the LR against T also reads the control's w32 runs)
    widthlr = {j.key for j in plan(lr_axes[:2], seed)} if {"widthlr", "lrT"} & set(axes) else set()
    if widthlr:  # (its own table and LR-curve plot)
        stem = os.path.join(RESULTS, "growth_scaling_width_lr")
        lr_jobs = plan(lr_axes, seed)  # (and every other stored LR of their points: sweeps that started elsewhere)
        data, table = width_lr_summary([r for r in (load(j) for j in lr_jobs) if r] + extra_stored(lr_jobs), seed)
        write(stem, data, table)
        plot_width_lr(data, stem + ".png")
        print(table)
    study = [j for j in jobs if j.key not in precision | control | widthlr]
    stored = [r for r in (load(j) for j in study) if r] + extra_stored(study)
    if stored:
        analyse(stored, seed)


if __name__ == "__main__":
    main()
