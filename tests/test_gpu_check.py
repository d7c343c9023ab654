"""benchmarks/gpu_check.sh: its CPU reduced mode runs every section (what CI can keep working), and
the GPU runs' flags pass the trainer's validation for CUDA and fit an 80 GiB GPU by the planner."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import gpu_check
from conftest import run


@pytest.mark.parametrize("name", sorted(gpu_check.GPU_RUNS))
def test_gpu_runs_are_valid_cuda_configs(name):
    from megatron_grow import config, memory
    from megatron_grow.finalize import finalize

    for impl in ("transformer_engine", "local"):
        for bf16 in (True, False):
            cfg = finalize(config.parse_args(gpu_check.flags(name, True, impl, bf16)), 1, "cuda",
                           impl == "transformer_engine")
            assert cfg.transformer_impl == impl and cfg.bf16 == bf16
            assert memory.estimate(cfg)["peak"] < 70 * 2**30  # an H100's 80 GiB less the context's share


def test_reduced_mode_on_cpu(tmp_path):
    res = run(["bash", "benchmarks/gpu_check.sh", "--reduced", "--out", str(tmp_path)], timeout=420)
    assert "| section | check | value | target | pass |" in res.stdout
    with open(tmp_path / "gpu_check_cpu.json") as f:
        rows = json.load(f)["rows"]
    assert (tmp_path / "gpu_check_cpu.md").exists()
    assert {r["section"] for r in rows} == {"training", "bf16 vs fp32", "growth", "Newton-Schulz"}
    assert not [r for r in rows if r["pass"] is False], rows

    def number(section, words):
        (r,) = [r for r in rows if r["section"] == section and words in r["check"]]
        assert r["number"] is not None and math.isfinite(r["number"]), r
        return r["number"]

    assert number("training", "tokens/s") > 0
    assert number("training", "planner") > 0  # GiB (no measured peak on CPU, so no error to compare)
    assert number("growth", "seconds") > 0
    assert number("Newton-Schulz", "square 256x256 [torch]") > 0  # ms
    assert 0 < number("Newton-Schulz", "Muon[torch] step share") < 1
    assert 0 < number("bf16 vs fp32", "max relative loss difference") <= 0.02  # (bf16 runs on CPU too)
