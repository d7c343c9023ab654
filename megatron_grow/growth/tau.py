"""Choosing tau, when to grow: measure the mixing time t_mix in a pilot, then tau = T_stable - t_mix.

The method (Bu, arXiv 2511.04981): under WSD the grown model's loss meets the fixed-size model's
curve t_mix iterations after growth, and t_mix hardly depends on when growth happens. So a pilot
pair, a fixed-size run and a run grown right after warmup, both on the same schedule and data,
gives t_mix; a full run of T iterations whose decay starts at T_stable = T - decay then grows at
tau = T_stable - t_mix: it has mixed by the time the LR decays.

t_mix: the first iteration i >= tau_pilot from which the grown run's loss stays within
``tolerance`` (relative) of the fixed run's at every later common iteration, minus tau_pilot. Both
curves are smoothed with a trailing moving average of ``window`` logged points first (train losses
are per batch; both runs see the same batches, so their noise is correlated and the gap is smooth).

The expected compute of the planned run, per FLOPs convention (megatron_grow/flops.py), is
(tau F_src + (T - tau) F_tgt) / (T F_tgt), with F the per-iteration FLOPs read from the pilot's
own metrics (the grown pilot logs both the source's and the target's).
"""

from __future__ import annotations

import json
import math
import os

from megatron_grow.config import RunConfig
from megatron_grow.flops import CONVENTIONS


class PlanError(ValueError):
    pass


def read(path: str) -> list[dict]:
    if not os.path.isfile(path):
        raise PlanError(f"pilot metrics file {path} not found")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _series(records: list[dict], metric: str) -> dict[int, float]:
    return {r["iter"]: r[metric] for r in records if metric in r and "event" not in r}


def _smooth(series: dict[int, float], window: int) -> dict[int, float]:
    its = sorted(series)
    return {it: sum(series[j] for j in its[max(0, k - window + 1):k + 1]) / len(its[max(0, k - window + 1):k + 1])
            for k, it in enumerate(its)}


def grow_event(records: list[dict]) -> dict:
    ev = [r for r in records if r.get("event") == "grow"]
    if not ev:
        raise PlanError("the grown pilot's metrics have no growth event; run it with --grow-at-iter")
    return ev[0]


def mixing_time(fixed: list[dict], grown: list[dict], tolerance: float = 0.01, metric: str = "auto",
                window: int = 10) -> dict:
    """t_mix of a pilot pair (metrics records). Returns {"t_mix", "tau_pilot", "metric", "mixed_at",
    "gap_at_growth", "final_gap"}; t_mix is None when the grown run never stays within tolerance."""
    tau = grow_event(grown)["iter"]
    if metric == "auto":
        after = [i for i in _series(grown, "lm_loss") if i > tau and i in _series(fixed, "lm_loss")]
        metric = "lm_loss" if len(after) >= 2 * window else "val_loss"
    f, g = _series(fixed, metric), _series(grown, metric)
    if metric == "lm_loss":
        f, g = _smooth(f, window), _smooth(g, window)
    common = sorted(i for i in g if i in f and i > tau)
    if not common:
        raise PlanError(f"the pilot runs share no {metric} points after growth (iteration {tau}); "
                        "log the same iterations in both, past the growth")
    gaps = {i: (g[i] - f[i]) / f[i] for i in common}
    mixed_at = None
    for i in reversed(common):  # the earliest point from which every later gap is within tolerance
        if gaps[i] > tolerance:
            break
        mixed_at = i
    return {"t_mix": None if mixed_at is None else mixed_at - tau, "tau_pilot": tau, "metric": metric,
            "mixed_at": mixed_at, "gap_at_growth": gaps[common[0]], "final_gap": gaps[common[-1]],
            "last_common_iter": common[-1], "tolerance": tolerance}


def per_iter_flops(grown: list[dict]) -> tuple[dict, dict]:
    """(source, target) per-iteration FLOPs in each convention, from a grown run's metrics."""
    tau = grow_event(grown)["iter"]
    its = [r for r in grown if "flops" in r and "event" not in r]
    src = [r for r in its if r["iter"] <= tau]
    tgt = [r for r in its if r["iter"] > tau]
    if not src or not tgt:
        raise PlanError("the grown pilot must log iterations before and after its growth")
    return ({k: src[-1][k] for k in CONVENTIONS if k in src[-1]}, {k: tgt[0][k] for k in CONVENTIONS if k in tgt[0]})


def compute_ratio(tau: int, train_iters: int, source: dict, target: dict) -> dict:
    """Compute of growing at tau relative to training the target throughout, per convention."""
    return {k: (tau * source[k] + (train_iters - tau) * target[k]) / (train_iters * target[k]) for k in target}


def plan(t_mix: int, train_iters: int, warmup: int, stable_end: int, margin: int = 0) -> dict:
    """tau = T_stable - t_mix - margin, kept after warmup. Returns {"tau", "t_mix", ...}."""
    tau = stable_end - t_mix - margin
    note = None
    if tau <= warmup:
        note = (f"t_mix {t_mix} does not fit in the stable phase ({warmup}..{stable_end}): growing right "
                f"after warmup, at {warmup + 1}; a longer run (--train-iters) saves compute")
        tau = warmup + 1
    return {"tau": tau, "t_mix": t_mix, "train_iters": train_iters, "warmup": warmup, "stable_end": stable_end,
            "fraction": tau / train_iters, "note": note}


def plan_from_pilot(fixed_path: str, grown_path: str, train_iters: int, warmup: int, stable_end: int,
                    tolerance: float = 0.01, metric: str = "auto", window: int = 10) -> dict:
    """The whole planner: t_mix from the pilot files, tau for the run, expected compute ratios."""
    fixed, grown = read(fixed_path), read(grown_path)
    mix = mixing_time(fixed, grown, tolerance, metric, window)
    if mix["t_mix"] is None:
        raise PlanError(f"the grown pilot ({grown_path}) never stays within {tolerance:.1%} of the fixed one "
                        f"({fixed_path}) on {mix['metric']} after growth at iteration {mix['tau_pilot']} "
                        f"(gap {mix['final_gap']:+.2%} at iteration {mix['last_common_iter']}); run the pilots "
                        f"longer or raise the tolerance")
    out = plan(mix["t_mix"], train_iters, warmup, stable_end)
    out["mixing"] = mix
    src, tgt = per_iter_flops(grown)
    out["compute_ratio"] = compute_ratio(out["tau"], train_iters, src, tgt)
    return out


def describe(p: dict) -> str:
    m = p["mixing"]
    lines = [f"pilot: grown at iteration {m['tau_pilot']}, {m['metric']} within {m['tolerance']:.1%} of the fixed run "
             f"from iteration {m['mixed_at']} on: t_mix = {p['t_mix']} iterations",
             f"run: {p['train_iters']} iterations, warmup {p['warmup']}, stable until {p['stable_end']} -> "
             f"grow at tau = {p['tau']} ({p['fraction']:.2f} T)"]
    if p["note"]:
        lines.append("note: " + p["note"])
    names = {"flops": "exact matmul FLOPs", "flops_6n": "6 N tokens, N all parameters",
             "flops_6n_nonemb": "6 N tokens, N non-embedding"}
    for k, r in p["compute_ratio"].items():
        lines.append(f"expected compute vs fixed-size ({names[k]}): {r:.3f}x ({1 - r:.0%} saved, "
                     f"{1 / r if r > 0 else math.inf:.1f}x less)")
    return "\n".join(lines)


def auto_tau(cfg: RunConfig) -> tuple[list[str], dict]:
    """--grow-at auto: (problems, the fields that set tau from the pilot pair: tau = T_stable - t_mix).
    Pure: ``finalize`` applies the fields."""
    if cfg.grow_at != "auto":
        return (["--grow-pilot-metrics takes effect only with --grow-at auto"] if cfg.grow_pilot_metrics else []), {}
    if cfg.grow_at_iter is not None or cfg.grow_at_fraction is not None:
        return ["--grow-at auto chooses tau itself; drop --grow-at-iter / --grow-at-fraction"], {}
    files = (cfg.grow_pilot_metrics or "").split(",")
    if len(files) != 2 or not all(files):
        return ["--grow-at auto needs --grow-pilot-metrics FIXED.jsonl,GROWN.jsonl (the metrics of a fixed-size "
                "pilot and of one grown right after warmup; see tools/plan_growth.py)"], {}
    if cfg.lr_decay_style != "wsd":
        return [f"--grow-at auto plans tau = T_stable - t_mix for --lr-decay-style wsd, not {cfg.lr_decay_style}; "
                "use wsd or give --grow-at-iter"], {}
    try:
        plan = plan_from_pilot(*files, cfg.train_iters, cfg.warmup_iters, cfg.wsd_stable_end, cfg.grow_mix_tolerance)
    except PlanError as e:
        return [f"--grow-at auto (--grow-pilot-metrics): {e}"], {}
    return [], {"grow_at_iter": plan["tau"], "grow_at": None,
                "grow_plan_text": "--grow-at auto: " + describe(plan).replace("\n", "\n  ")}
