"""The example launch scripts really run: a CPU smoke variant of each (2 processes, tiny preset)."""

import os

import pytest

from conftest import ROOT, free_port, read_metrics, run


@pytest.mark.parametrize("script,grow_tp,extra", [("pretrain_llama3_grow.sh", "2", {}),
                                                ("pretrain_gpt2_grow.sh", "1", {}),
                                                ("pretrain_deepseekv3_grow.sh", "1", {"EP": "2", "GROW_EP": "2"})])
def test_example_cpu_smoke(tmp_path, script, grow_tp, extra):
    env = {**extra, "DEVICE": "cpu", "GPUS_PER_NODE": "2", "PRESET": "tiny", "TARGET_LAYERS": "4", "GROW_TP": grow_tp,
           "TRAIN_ITERS": "10", "MICRO_BATCH_SIZE": "2", "GLOBAL_BATCH_SIZE": "4", "SEQ_LENGTH": "64",
           "EVAL_INTERVAL": "5", "EVAL_ITERS": "2", "SAVE_INTERVAL": "5", "RUN_DIR": str(tmp_path),
           "MASTER_PORT": free_port()}
    run(["bash", os.path.join(ROOT, "examples", script), "--no-progress"], timeout=600, env=env)
    recs = read_metrics(tmp_path / "metrics.jsonl")
    grow = [r for r in recs if r.get("event") == "grow"]
    assert len(grow) == 1 and grow[0]["iter"] == 8 and grow[0]["to_layers"] == 4
    assert (grow[0]["to_layout"]["tp"] == int(grow_tp)
            and grow[0]["to_layout"].get("ep", 1) == int(extra.get("GROW_EP", 1)))
    assert max(r["iter"] for r in recs if "lm_loss" in r) == 10
    assert os.path.isfile(tmp_path / "ckpt" / "latest_checkpointed_iteration.txt")
    assert any(f.startswith("events.out") for f in os.listdir(tmp_path / "tensorboard"))


def test_example_errors_name_the_variables(tmp_path):
    """A bad value set through an example's environment variable: the error names the variable beside
    the flag, once, at the end of the output."""
    env = {"DEVICE": "cpu", "GPUS_PER_NODE": "2", "PRESET": "tiny", "TARGET_LAYERS": "4", "GROW_TP": "1", "EP": "3",
           "GROW_EP": "3", "TRAIN_ITERS": "10", "MICRO_BATCH_SIZE": "2", "GLOBAL_BATCH_SIZE": "4",
           "RUN_DIR": str(tmp_path), "MASTER_PORT": free_port()}
    res = run(["bash", os.path.join(ROOT, "examples", "pretrain_deepseekv3_grow.sh"), "--no-progress"], timeout=120,
              env=env, check=False)
    needle = "--num-experts 8 is not divisible by --expert-model-parallel-size ($EP) 3"
    assert res.returncode != 0 and res.stdout.count(needle) == 1, res.stdout[-3000:]
    assert any(needle in line for line in res.stdout.strip().splitlines()[-4:]), res.stdout[-3000:]
