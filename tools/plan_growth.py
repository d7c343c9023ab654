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
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from megatron_grow.config import RunConfig  # noqa: E402
from megatron_grow.growth import tau as planner  # noqa: E402


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
    p.add_argument("--json", help="also write the plan here")
    args = p.parse_args(argv)
    if args.t_mix is None and not (args.fixed and args.grown):
        p.error("give --fixed and --grown pilot metrics, or --t-mix")
    return args


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
    print(f"--grow-at-iter {result['tau']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
