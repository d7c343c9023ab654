"""The scaling study's analysis (benchmarks/growth_scaling.py): frontier interpolation, fitted laws
and their crossings, gaps against the fixed-size frontier, on data with known answers."""

import math
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, ROOT)
from benchmarks import growth_scaling as gs  # noqa: E402


def test_frontier_interpolates_log_loss_in_log_compute():
    pts = [(0.25, 4.0), (1.0, 2.0)]
    assert gs.frontier(pts, 0.25) == pytest.approx(4.0)
    assert gs.frontier(pts, 1.0) == pytest.approx(2.0)
    assert gs.frontier(pts, 0.5) == pytest.approx(math.sqrt(8.0))  # halfway in log: geometric mean
    assert gs.frontier(pts + [(0.5, 3.0)], 0.5) == pytest.approx(3.0)  # a measured point wins
    assert gs.frontier(pts, 2.0) == pytest.approx(math.sqrt(2.0))  # extrapolated: loss ~ c^-1/2 here


def test_power_law_fit_recovers_its_crossings():
    xs = [375, 750, 1500, 3000]
    law = gs.fit_law(xs, [0.2 * x ** -0.5 for x in xs], sigma=1e-4)
    assert law["a"] == pytest.approx(0.2, rel=1e-6) and law["b"] == pytest.approx(0.5, rel=1e-6)
    assert law["x_at_0.01"] == pytest.approx(400.0, rel=1e-6)  # 0.2 x^-0.5 = 0.01
    lo, hi = law["x_at_0.01_68"]
    assert lo < 400 < hi and hi / lo < 1.2
    rising = gs.fit_law(xs, [0.001 * x ** 0.5 for x in xs], sigma=1e-4)  # a gap that grows with x
    assert rising["b"] == pytest.approx(-0.5, rel=1e-6) and rising["x_at_0.01"] == pytest.approx(100.0, rel=1e-6)
    assert "note" in gs.fit_law(xs, [0.1, -0.01, -0.02, 0.03], sigma=1e-4)


def test_breakeven_fit_finds_where_growth_stops_paying():
    xs = [375, 750, 1500, 3000]
    law = gs.fit_breakeven(xs, [0.05 - 0.01 * math.log(x) for x in xs], sigma=1e-4)
    assert law["x_at_0"] == pytest.approx(math.exp(5.0), rel=1e-6)
    assert gs.fit_breakeven(xs, [0.02] * 4, sigma=1e-4)["x_at_0"] == math.inf  # never crosses


def _run(name, tau, val, flops, source=None, schedule="wsd"):
    return {"name": name, "point": {"width": 32, "vocab": 512, "layers": 8, "T": 100, "seed": 1234},
            "source_layers": source, "tau_fraction": tau, "schedule": schedule, "val_loss": val,
            "cum_flops": flops, "cum_flops_6n": flops, "cum_flops_6n_nonemb": flops, "train_seconds": flops,
            "train_curve": [[i, 3.0] for i in range(1, 101)],
            "grow_event": {"event": "grow", "iter": 80, "loss_before": 3.5, "loss_after": 3.5} if tau else None}


def test_point_table_gaps_against_fixed_and_frontier():
    rows = gs.point_table([_run("fixed", None, 2.0, 100.0), _run("fixed-0.35", None, 2.6, 35.0),
                           _run("fixed-0.6", None, 2.3, 60.0), _run("p1-copy_zeroL-0.8", 0.8, 2.2, 40.0, source=1)])
    by = {r["name"]: r for r in rows}
    assert by["fixed"]["gap"] == 0 and "gap_matched" not in by["fixed"]
    assert by["fixed-0.35"]["gap"] == pytest.approx(0.3)
    grown = by["p1-copy_zeroL-0.8"]
    assert grown["gap"] == pytest.approx(0.1) and grown["compute"] == pytest.approx(0.4)
    assert grown["gap_matched"] == pytest.approx(2.2 / gs.frontier([(0.35, 2.6), (0.6, 2.3), (1.0, 2.0)], 0.4) - 1)
    assert grown["gap_matched"] < 0 and grown["t_mix"] == 1  # equal train losses: mixed from the first point


def test_control_summary_compares_each_side_at_its_best_lr():
    """Best LR per run (interior or not), depth gain of the never-grown source (the fixed run of the
    1-layer point), recovered fraction and the Pareto front over depths, on runs with known answers."""
    def run(name, loss, compute, tau=None, layers=8):
        return {"name": name, "val_loss": loss, "cum_flops_6n": compute, "tau_fraction": tau,
                "point": {"width": 32, "vocab": 512, "layers": layers, "T": 1500, "seed": 1}}

    results = [run("fixed+lr1e-2", 2.2, 1.0), run("fixed+lr2e-2", 2.0, 1.0), run("fixed+lr4e-2", 2.1, 1.0),
               run("fixed+lr5e-3", 2.3, 1.0), run("fixed+lr1e-2", 2.5, 0.2, layers=1),
               run("fixed+lr2e-2", 2.4, 0.2, layers=1), run("fixed-0.6+lr1e-2", 2.6, 0.25, layers=2),
               run("fixed-0.35+lr1e-2", 2.3, 0.35), run("fixed+lr1e-2", 1.9, 2.0, layers=16),
               run("grown+lr1e-2", 2.3, 0.4, 0.8), run("grown+lr2e-2", 2.1, 0.4, 0.8)]
    out, table = gs.control_summary(results)
    assert list(out["points"]) == ["w32-v512-L8-T1500-s1"]  # (the 16-layer run is no part of an 8-layer point)
    out = out["points"]["w32-v512-L8-T1500-s1"]
    runs = {r["name"]: r for r in out["runs"]}
    assert runs["fixed"]["best_lr"] == 2e-2 and runs["fixed"]["interior"] and not runs["src-1"]["interior"]
    assert out["depth_gain"] == pytest.approx(2.4 / 2.0 - 1) and out["informative"]
    assert runs["grown"]["recovered"] == pytest.approx((2.4 - 2.1) / (2.4 - 2.0))
    assert out["pareto"] == ["src-1", "fixed-0.35", "fixed"]  # d2-0.6: more compute than src-1, worse
    assert runs["grown"]["vs_frontier"] < 0 and runs["fixed-0.35"]["vs_frontier"] == pytest.approx(0)
    assert "| grown | 0.400 | 0.02 | no |" in table
