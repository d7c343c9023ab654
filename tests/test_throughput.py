"""benchmarks/throughput.py: its bare loop builds the trainer's model (same parameter count, a loss
near ln(vocab) at init), and its --quick mode runs end to end (what CI keeps working)."""

from __future__ import annotations

import json
import math
import sys

import pytest

from benchmarks import throughput
from conftest import run


@pytest.mark.parametrize("family", ["gpt2", "llama3"])
def test_bare_model_is_the_trainers(family):
    import torch

    cfg = throughput.finalized(throughput.trainer_flags(family, 128, throughput.QUICK, 1, False), 1)
    spec = throughput.bare_spec(cfg)
    model = throughput.bare_model(spec)
    assert sum(p.numel() for p in model.parameters()) == spec["params"]
    bare = throughput.Bare(spec, bf16=False)
    x, y = bare.batch()
    assert x.shape == (cfg.micro_batch_size, cfg.seq_length) and torch.equal(x[:, 1:], y[:, :-1])
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (*x.shape, spec["vocab"])
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten()).item()
    assert abs(loss - math.log(spec["vocab"])) < 0.1


def test_quick_run(tmp_path):
    stem = tmp_path / "throughput"
    run([sys.executable, "benchmarks/throughput.py", "--quick", "--widths", "64", "--families", "llama3",
         "--out", str(stem)], timeout=240)
    data = json.loads((tmp_path / "throughput.json").read_text())
    assert "| llama3 | 64 | bf16 | 2 |" in (tmp_path / "throughput.md").read_text()
    assert data["peak"]["fp32"] > 0 and data["peak"]["bf16"] > 0
    rows = data["rows"]
    assert sorted((r["precision"], r["nproc"]) for r in rows) == [("bf16", 1), ("bf16", 2), ("fp32", 1), ("fp32", 2)]
    for r in rows:
        assert not r.get("error"), r["error"]
        assert (r["family"], r["width"]) == ("llama3", 64)
        for k in ("tokens_per_s", "bare_tokens_per_s", "trainer_over_bare", "flops_per_s", "fraction_of_peak"):
            assert r[k] > 0 and math.isfinite(r[k]), (k, r)
        assert (r.get("bf16_over_fp32") or 0) > 0 if r["precision"] == "bf16" else "bf16_over_fp32" not in r
        # the same model from its init (not the same draws): step-1 losses close; both loops train (the
        # last three steps below the first three: one small batch's loss is noisy)
        losses, bare = r["losses"], r["bare_losses"]
        assert abs(losses[0] - bare[0]) < 0.05 * bare[0], (losses, bare)
        for x in (losses, bare):
            assert sum(x[-3:]) < sum(x[:3]), (losses, bare)
