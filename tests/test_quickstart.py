"""The README's main command, shortened: installs nothing new here, trains on the bundled corpus and grows;
the plotting tool it points to draws that run."""

import os
import sys

from conftest import ROOT, losses, read_metrics, run


def test_quickstart_runs_on_the_demo_corpus(tmp_path):
    res = run(["bash", os.path.join(ROOT, "scripts", "run.sh"), "--train-iters", "12", "--eval-interval", "6",
               "--eval-iters", "2"],
              timeout=600, env={"RUN_DIR": str(tmp_path)})
    assert "done: llama3 4 layers, iteration 12" in res.stdout and "grew 1 -> 4 layers" in res.stdout
    assert f"tools/export_hf.py --load {tmp_path}/ckpt" in res.stdout  # the next commands
    grow = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r.get("event") == "grow"]
    assert [(g["iter"], g["to_layers"]) for g in grow] == [(10, 4)]  # after 80% of 12 iterations, rounded
    loss = losses(tmp_path / "metrics.jsonl")
    assert sorted(loss) == list(range(1, 13)) and loss[12] < loss[1]
    vals = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "val_loss" in r]
    assert [r["iter"] for r in vals] == [6, 12]
    rec = read_metrics(tmp_path / "metrics.jsonl")[0]
    for key in ("iter", "consumed_samples", "lm_loss", "lr", "grad_norm", "num_layers", "tp", "pp", "dp",
                "tokens", "flops", "flops_6n", "flops_6n_nonemb", "cum_flops", "cum_tokens", "step_time_s"):
        assert key in rec, key
    assert (rec["num_layers"], rec["dp"], rec["tokens"]) == (1, 2, 16 * 128)
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "tensorboard"))
    assert f"tensorboard --logdir {tmp_path}/tensorboard" in res.stdout
    assert open(tmp_path / "ckpt" / "latest_checkpointed_iteration.txt").read() == "12"
    png = tmp_path / "m.png"
    out = run([sys.executable, "tools/plot_metrics.py", str(tmp_path / "metrics.jsonl"), "--out", str(png)])
    assert f"wrote {png}" in out.stdout and png.stat().st_size > 10000
    bad = run([sys.executable, "tools/plot_metrics.py", str(tmp_path / "nope.jsonl")], check=False)
    assert bad.returncode != 0 and "no such metrics file" in bad.stdout
