"""The tau planner: t_mix from a pilot pair, tau = T_stable - t_mix, compute ratios, --grow-at auto."""

import json
import math
import sys

import pytest

from conftest import TINY, read_metrics, run, torchrun
from megatron_grow.config import RunConfig
from megatron_grow.growth import tau as planner

FLOPS_SRC = {"flops": 100, "flops_6n": 60, "flops_6n_nonemb": 10}
FLOPS_TGT = {"flops": 400, "flops_6n": 300, "flops_6n_nonemb": 250}


def curves(tau=20, n=80, bump=2.0, decay=5.0, relapse=None):
    """A fixed run's loss 5 + 10/(i+1); the grown run's is that plus bump * exp(-(i - tau)/decay)
    after tau (plus an optional late excursion {iteration: extra})."""
    fixed = [{"iter": i, "lm_loss": 5 + 10 / (i + 1), **FLOPS_TGT} for i in range(1, n + 1)]
    grown = []
    for i in range(1, n + 1):
        loss = 5 + 10 / (i + 1) + (bump * math.exp(-(i - tau) / decay) if i > tau else 0.0)
        loss += (relapse or {}).get(i, 0.0)
        grown.append({"iter": i, "lm_loss": loss, **(FLOPS_SRC if i <= tau else FLOPS_TGT)})
        if i == tau:
            grown.append({"event": "grow", "iter": tau, "from_layers": 1, "to_layers": 4})
    return fixed, grown


def hand_t_mix(tau, bump, decay, tol, n):
    last_bad = max(i for i in range(tau + 1, n + 1) if bump * math.exp(-(i - tau) / decay) / (5 + 10 / (i + 1)) > tol)
    return last_bad + 1 - tau


def test_mixing_time_matches_a_hand_count():
    fixed, grown = curves()
    mix = planner.mixing_time(fixed, grown, tolerance=0.01, window=1)
    assert mix["metric"] == "lm_loss" and mix["tau_pilot"] == 20
    assert mix["t_mix"] == hand_t_mix(20, 2.0, 5.0, 0.01, 80) == 19
    assert mix["gap_at_growth"] == pytest.approx(2 * math.exp(-1 / 5) / (5 + 10 / 22))
    assert 0 < mix["final_gap"] < 1e-5


def test_a_late_excursion_postpones_mixing():
    fixed, grown = curves(relapse={60: 0.5})  # within tolerance from 39, out again at 60
    assert planner.mixing_time(fixed, grown, tolerance=0.01, window=1)["mixed_at"] == 61


def test_never_mixing_is_an_error_that_says_so(tmp_path):
    fixed, grown = curves(bump=3.0, decay=1e6)  # the gap never closes
    f, g = tmp_path / "f.jsonl", tmp_path / "g.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in fixed))
    g.write_text("".join(json.dumps(r) + "\n" for r in grown))
    with pytest.raises(planner.PlanError, match="never stays within 1.0%"):
        planner.plan_from_pilot(str(f), str(g), 1000, 20, 900)


def test_plan_and_compute_ratio(tmp_path):
    fixed, grown = curves()
    f, g = tmp_path / "f.jsonl", tmp_path / "g.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in fixed))
    g.write_text("".join(json.dumps(r) + "\n" for r in grown))
    sched = RunConfig(train_iters=1000)  # 2% warmup, 10% decay
    warmup, stable_end = sched.warmup_iters, sched.wsd_stable_end
    assert (warmup, stable_end) == (20, 900)
    p = planner.plan_from_pilot(str(f), str(g), 1000, warmup, stable_end, window=1)
    assert p["tau"] == 900 - 19
    for k in FLOPS_TGT:
        assert p["compute_ratio"][k] == pytest.approx((881 * FLOPS_SRC[k] + 119 * FLOPS_TGT[k]) / (1000 * FLOPS_TGT[k]))
    short = planner.plan(27, 60, 1, 54 - 30)  # t_mix longer than the stable phase
    assert short["tau"] == 2 and "does not fit" in short["note"]


def test_tool_prints_the_plan_and_refuses_bad_input(tmp_path):
    fixed, grown = curves()
    f, g = tmp_path / "f.jsonl", tmp_path / "g.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in fixed))
    g.write_text("".join(json.dumps(r) + "\n" for r in grown))
    res = run([sys.executable, "tools/plan_growth.py", "--fixed", str(f), "--grown", str(g), "--train-iters", "1000",
               "--window", "1", "--json", str(tmp_path / "plan.json")], timeout=120)
    assert "t_mix = 19" in res.stdout and "--grow-at-iter 881" in res.stdout and "exact matmul FLOPs" in res.stdout
    assert json.load(open(tmp_path / "plan.json"))["tau"] == 881
    # pilots unlike the run to plan are said so, and so is what pilots alone leave out
    f.write_text("".join(json.dumps(dict(r, num_layers=4)) + "\n" for r in fixed))
    res = run([sys.executable, "tools/plan_growth.py", "--fixed", str(f), "--grown", str(g), "--train-iters", "1000",
               "--window", "1", "--target-num-layers", "8"], timeout=120)
    assert "warning: the pilots ran 80 iterations, the run to plan 1000" in res.stdout
    assert "warning: the fixed pilot has 4 layers, the run to plan 8" in res.stdout
    assert "pilot the never-grown source and a shallower model too" in res.stdout
    # what the study's laws along depth predict for the target (c0 + c1 ln L, here 0.01 ln 16 above the front)
    law = {"axis": "depth", "name": "p1-stack", "points": [[4, 0.014, 0.5, 0.2], [8, 0.021, 0.5, 0.2]],
           "front": {"c0": 0.0, "c1": 0.01}, "recovered_90": {"c0": 0.4, "c1": 0.0}, "sigma": 0.0,
           "sigma_recovered": 0.0}
    (tmp_path / "study.json").write_text(json.dumps({"laws": {"depth/p1-stack": law}}))
    res = run([sys.executable, "tools/plan_growth.py", "--t-mix", "100", "--train-iters", "1000",
               "--target-num-layers", "16", "--study", str(tmp_path / "study.json")], timeout=120)
    assert ("the study's laws predict: p1-stack to 16 layers: +2.8% vs the best fixed-size model at the same compute "
            "(68%: +2.8%..+2.8%), 50% of the depth gain recovered") in res.stdout and "extrapolated" in res.stdout
    res = run([sys.executable, "tools/plan_growth.py", "--fixed", str(tmp_path / "none.jsonl"), "--grown", str(g),
               "--train-iters", "1000"], timeout=120, check=False)
    assert res.returncode != 0 and "none.jsonl not found" in res.stdout and "Traceback" not in res.stdout
    res = run([sys.executable, "tools/plan_growth.py", "--fixed", str(g), "--grown", str(f), "--train-iters", "1000"],
              timeout=120, check=False)
    assert res.returncode != 0 and "no growth event" in res.stdout


ARGS = ["--model", "llama3", *TINY, "--mock-data", "--vocab-size", "1000", "--micro-batch-size", "2",
        "--global-batch-size", "4", "--lr", "1e-2", "--lr-warmup-iters", "1", "--eval-interval", "1000"]


def test_trainer_grow_at_auto_uses_the_plan(tmp_path):
    """Real pilots (2-layer fixed; 1 layer grown to 2 right after warmup), then --grow-at auto: the run
    grows at the tau the planner computes from the same files."""
    fixed, grown = tmp_path / "fixed.jsonl", tmp_path / "grown.jsonl"
    pilot = [*ARGS, "--train-iters", "24"]
    torchrun(1, [*pilot, "--num-layers", "2", "--metrics-file", str(fixed)])
    torchrun(1, [*pilot, "--num-layers", "1", "--grow-at-iter", "2", "--grow-to-layers", "2",
                 "--metrics-file", str(grown)])
    out = tmp_path / "auto.jsonl"
    tol = "0.05"
    res = torchrun(1, [*ARGS, "--train-iters", "40", "--num-layers", "1", "--grow-to-layers", "2", "--grow-at", "auto",
                       "--grow-pilot-metrics", f"{fixed},{grown}", "--grow-mix-tolerance", tol,
                       "--metrics-file", str(out)])
    sched = RunConfig(train_iters=40, lr_warmup_iters=1)
    expect = planner.plan_from_pilot(str(fixed), str(grown), 40, sched.warmup_iters, sched.wsd_stable_end, float(tol))
    event = [r for r in read_metrics(out) if r.get("event") == "grow"]
    assert len(event) == 1 and event[0]["iter"] == expect["tau"], (event, expect)
    assert "--grow-at auto: pilot: grown at iteration 2" in res.stdout
    bad = torchrun(1, [*ARGS, "--train-iters", "40", "--num-layers", "1", "--grow-to-layers", "2", "--grow-at", "auto"],
                   check=False)
    assert bad.returncode != 0 and "--grow-pilot-metrics FIXED.jsonl,GROWN.jsonl" in bad.stdout
