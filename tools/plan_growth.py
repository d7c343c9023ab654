"""Plan tau from a pilot pair: measure t_mix, recommend tau = T_stable - t_mix, print the saving.

    # pilots: the same flags, one fixed-size, one grown right after warmup (both logging every iteration)
    python tools/plan_growth.py --fixed runs/pilot_fixed/metrics.jsonl --grown runs/pilot_grown/metrics.jsonl \
        --train-iters 20000 --lr-warmup-fraction 0.02 --lr-wsd-decay-fraction 0.1
    # or from a known t_mix
    python tools/plan_growth.py --t-mix 1500 --train-iters 20000

The trainer does the same with --grow-at auto --grow-pilot-metrics FIXED,GROWN (megatron_grow/growth/tau.py).
"""

import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from megatron_grow.config import RunConfig  # noqa: E402
from megatron_grow.growth import tau as planner  # noqa: E402

STUDY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "results",
                     "growth_scaling_control.json")


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fixed", help="metrics JSONL of the fixed-size pilot")
    p.add_argument("--grown", help="metrics JSONL of the pilot grown right after warmup")
    p.add_argument("--t-mix", type=int, help="skip the pilots: plan from this mixing time")
    p.add_argument("--train-iters", type=int, required=True, help="T of the run to plan")
    p.add_argument("--lr-warmup-iters", type=int)
    p.add_argument("--lr-warmup-fraction", type=float, default=0.02)
    p.add_argument("--lr-wsd-decay-iters", type=int)
    p.add_argument("--lr-wsd-decay-fraction", type=float, default=0.1)
    p.add_argument("--tolerance", type=float, default=0.01, help="relative loss gap that counts as mixed (0.01)")
    p.add_argument("--metric", default="auto", choices=["auto", "lm_loss", "val_loss"],
                   help="auto: train loss when both pilots log it every iteration after growth, else val_loss")
    p.add_argument("--window", type=int, default=10, help="moving-average window over logged train losses")
    p.add_argument("--target-num-layers", type=int, help="depth of the run to plan (checked against the pilots)")
    p.add_argument("--study", default=STUDY,
                   help="the scaling study's controlled laws (growth_scaling.py --axes control) whose prediction for "
                        "--target-num-layers is printed (default: %(default)s)")
    p.add_argument("--json", help="also write the plan here")
    args = p.parse_args(argv)
    if args.t_mix is None and not (args.fixed and args.grown):
        p.error("give --fixed and --grown pilot metrics, or --t-mix")
    return args


def pilot_warnings(args) -> list[str]:
    """Where the pilots differ from the run to plan (length, depth), and what the controlled study
    says a plan from pilots alone leaves out."""
    out = []
    if args.fixed and args.grown:
        fixed = [r for r in planner.read(args.fixed) if "lm_loss" in r]
        grown = [r for r in planner.read(args.grown) if "lm_loss" in r]
        length = max((r["iter"] for r in fixed), default=0)
        if length and length != args.train_iters:
            out.append(f"the pilots ran {length} iterations, the run to plan {args.train_iters}: t_mix depends on "
                       f"the length and on tau (docs/results.md, the scaling study), so tau is an estimate; a pilot "
                       f"pair at the run's length measures it")
        depth = fixed[-1].get("num_layers") if fixed else None
        if args.target_num_layers and depth and depth != args.target_num_layers:
            out.append(f"the fixed pilot has {depth} layers, the run to plan {args.target_num_layers}: t_mix and "
                       f"the gap grow with the target depth in the study; pilot the run's own model")
        if grown and fixed and grown[-1].get("num_layers") != depth:
            out.append(f"the grown pilot ends at {grown[-1].get('num_layers')} layers, the fixed one has {depth}")
    out.append("under control (never-grown sources, every depth, each run at its own best LR) growth ended above "
               "the best fixed-size model of any depth at the same compute at every informative point measured "
               "(docs/results.md, 'The answer on this hardware, under control'): pilot the never-grown source and a "
               "shallower model too, at their own best LRs, before trusting the saving below")
    return out


def law_predictions(path: str, layers: int) -> list[str]:
    """What the study's laws along depth (vs frontier and recovered fraction, each c0 + c1 ln L over the
    controlled points) predict at ``layers``, with a 68% band from the seed noise the laws were fitted
    under (the least-squares prediction error at ln L)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        laws = json.load(f).get("laws", {})
    out = []
    for law in laws.values():
        if law["axis"] != "depth":
            continue
        xs = [math.log(p[0]) for p in law["points"]]
        m = sum(xs) / len(xs)
        sxx = sum((x - m) ** 2 for x in xs)
        lever = math.sqrt(1 / len(xs) + (math.log(layers) - m) ** 2 / sxx) if sxx else 1.0
        front = law["front"]["c0"] + law["front"]["c1"] * math.log(layers)
        rec = 0.9 - (law["recovered_90"]["c0"] + law["recovered_90"]["c1"] * math.log(layers))
        d_front, d_rec = law["sigma"] * lever, law["sigma_recovered"] * lever
        depths = ", ".join(f"{p[0]:g}" for p in law["points"])
        out.append(f"{law['name']} to {layers} layers: {front:+.1%} vs the best fixed-size model at the same compute "
                   f"(68%: {front - d_front:+.1%}..{front + d_front:+.1%}), {rec:.0%} of the depth gain recovered "
                   f"({rec - d_rec:.0%}..{rec + d_rec:.0%}); fitted on {depths} layers at width 32, T 1500 on the "
                   f"bundled corpus" + (", extrapolated" if not min(xs) <= math.log(layers) <= max(xs) else ""))
    return out


def main(argv=None):
    args = parse(argv)
    run = RunConfig(train_iters=args.train_iters, lr_warmup_iters=args.lr_warmup_iters,  # (the trainer's rule)
                    lr_warmup_fraction=args.lr_warmup_fraction, lr_wsd_decay_iters=args.lr_wsd_decay_iters,
                    lr_wsd_decay_fraction=args.lr_wsd_decay_fraction)
    warmup, stable_end = run.warmup_iters, run.wsd_stable_end
    try:
        if args.t_mix is not None:
            result = planner.plan(args.t_mix, args.train_iters, warmup, stable_end)
            print(f"t_mix = {args.t_mix}: grow at tau = {result['tau']} ({result['fraction']:.2f} T) of "
                  f"{args.train_iters} iterations (stable phase ends at {stable_end})"
                  + (f"\nnote: {result['note']}" if result["note"] else ""))
        else:
            result = planner.plan_from_pilot(args.fixed, args.grown, args.train_iters, warmup, stable_end,
                                             args.tolerance, args.metric, args.window)
            print(planner.describe(result))
    except planner.PlanError as e:
        sys.exit(f"error: {e}")
    for warning in pilot_warnings(args):
        print(f"warning: {warning}")
    if args.target_num_layers:
        for line in law_predictions(args.study, args.target_num_layers):
            print(f"the study's laws predict: {line}")
    print(f"--grow-at-iter {result['tau']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
