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


def test_width_lr_sweep_moves_its_edge_and_finds_the_optimum(tmp_path, monkeypatch):
    """An LR sweep whose best LR sits at an edge gains the next LR outward once every LR is stored;
    the parabola vertex in log LR finds a known optimum; the summary gives depth gain and recovered
    fraction at each side's best LR and the slope of the best LR against width."""
    monkeypatch.setattr(gs, "OUT", str(tmp_path))
    assert [gs.lr_str(x) for x in (0.08, 0.0025, 0.4, 1e-2)] == ["8e-2", "2.5e-3", "4e-1", "1e-2"]
    opt = 0.015
    curve = {x: 2.0 + (math.log(x) - math.log(opt)) ** 2 for x in (5e-3, 1e-2, 2e-2, 4e-2)}
    assert gs.lr_optimum(curve) == pytest.approx(opt)
    assert gs.lr_optimum({1e-2: 2.0, 2e-2: 2.1, 4e-2: 2.2}) is None  # best at the edge

    p, run = gs.Point(width=16, T=gs.WIDTH_LR_T), gs.FIXED[0]
    lrs = gs.SCALE_LRS["match_adamw"]
    assert gs.swept(p, run, (), "fixed", lrs) == list(lrs)  # nothing stored yet
    results = []

    def store(point, name, lr, val):
        job = gs.Job(point, run, (), f"{name}+lr{lr}")
        r = {"key": job.key, "name": job.name, "val_loss": val, "point": gs.dataclasses.asdict(point)}
        gs._store(job, r)
        results.append(r)

    for lr in lrs:  # falling to the largest LR: one more (8e-2), and the next pass another (1.6e-1)
        store(p, "fixed", lr, 3.0 - float(lr))
    assert gs.swept(p, run, (), "fixed", lrs) == [*lrs, "8e-2"]
    store(p, "fixed", "8e-2", 3.0 - 0.08)
    assert gs.swept(p, run, (), "fixed", lrs) == [*lrs, "8e-2", "1.6e-1"]
    store(p, "fixed", "1.6e-1", 3.5)  # (interior now; EXTEND caps it anyway)
    assert gs.swept(p, run, (), "fixed", lrs) == [*lrs, "8e-2", "1.6e-1"]
    for lr in lrs:
        store(gs.dataclasses.replace(p, layers=1), "fixed", lr, 3.5 + (float(lr) - 1e-2) ** 2)
    data, table = gs.width_lr_summary(results, p.seed)
    w16 = data["modes"]["match_adamw"]["widths"][16]
    assert w16["fixed"]["best_lr"] == 0.08 and w16["fixed"]["interior"] and w16["src-1"]["best_lr"] == 1e-2
    assert w16["depth_gain"] == pytest.approx(3.5 / 2.92 - 1)
    assert "| 16 | fixed | 0.08 | yes |" in table


def test_control_laws_say_where_growth_would_reach_the_front():
    """Laws over controlled points with known lines: vs frontier 0.08 - 0.02 ln(L/2) along depth reaches 0
    at L = 2 e^4; the recovered fraction 0.5 + 0.1 ln(L/2) reaches 90% at L = 2 e^4 too; uninformative
    points and points off the axis are left out, and the 2-step recipes of every depth form one series."""
    def point(L, T, front, rec, gain=0.2, name="p1-2step{L}-stack"):
        return {"point": {"width": 32, "vocab": 512, "layers": L, "T": T, "seed": 1}, "informative": gain >= 0.03,
                "depth_gain": gain, "runs": [{"name": name.format(L=L), "grown": True, "vs_frontier": front,
                                             "recovered": rec}, {"name": "fixed", "grown": False}]}

    line = lambda L: (0.08 - 0.02 * math.log(L / 2), 0.5 + 0.1 * math.log(L / 2))  # noqa: E731
    points = {f"L{L}": point(L, 1500, *line(L)) for L in (4, 8, 16)}
    points["uninformative"] = point(32, 1500, -0.5, 1.0, gain=0.01)
    points["off the axis"] = point(8, 1500, -0.5, 1.0, name="p1-2step{L}-stack") | {
        "point": {"width": 64, "vocab": 512, "layers": 8, "T": 1500, "seed": 1}}
    laws, table = gs.control_laws(points, sigma=1e-6)
    law = laws["depth/p1-2step-stack"]
    assert [p[0] for p in law["points"]] == [4, 8, 16]
    assert law["front"]["x_at_0"] == pytest.approx(2 * math.exp(4), rel=1e-6)
    assert law["recovered_90"]["x_at_0"] == pytest.approx(2 * math.exp(4), rel=1e-6)
    assert "| depth | p1-2step-stack |" in table and not any(k.startswith("T/") for k in laws)


def test_control_seeds_give_the_spread_of_the_distance_to_the_front():
    def point(seed, front, rec, gain):
        return {"point": {"width": 32, "vocab": 512, "layers": 8, "T": 1500, "seed": seed}, "depth_gain": gain,
                "runs": [{"name": "grown", "grown": True, "vs_frontier": front, "recovered": rec},
                         {"name": "fixed", "grown": False}]}

    points = {f"s{s}": point(s, f, r, g) for s, f, r, g in ((1, 0.03, 0.2, 0.2), (2, 0.05, 0.1, 0.19),
                                                               (3, 0.04, 0.3, 0.21))}
    points["alone"] = dict(point(1, 0.5, 0.5, 0.5), point={"width": 64, "vocab": 512, "layers": 8, "T": 1500,
                                                           "seed": 1})
    out, table = gs.control_seeds(points)
    g = out["w32-v512-L8-T1500/grown"]
    assert g["seeds"] == [1, 2, 3] and g["mean"] == pytest.approx(0.04) and g["sd"] == pytest.approx(0.01)
    assert out["w32-v512-L8-T1500/depth gain"]["mean"] == pytest.approx(0.2)
    assert "w64" not in table
    assert "| w32 L8 T1500 | grown | 1, 2, 3 | +3.00%, +5.00%, +4.00% | +4.00% (1.00%) |" in table
