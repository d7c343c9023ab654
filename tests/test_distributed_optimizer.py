"""--use-distributed-optimizer (ZeRO-1): each data-parallel rank keeps and steps the optimizer state
of the parameters it owns. The same losses as the unsharded optimizer; checkpoints in the same
format, so a run resumes, or grows, at another DP size, sharded or not."""

import pytest

from conftest import TINY, assert_close, losses, torchrun

ARGS = ["--model", "llama3", *TINY, "--mock-data", "--vocab-size", "1000", "--micro-batch-size", "2",
        "--global-batch-size", "8", "--train-iters", "6", "--eval-interval", "100", "--lr", "1e-2",
        "--lr-warmup-iters", "1", "--num-layers", "2", "--save-interval", "3"]
SHARDED = ["--use-distributed-optimizer"]
TP2 = ["--tensor-model-parallel-size", "2"]


@pytest.mark.parametrize("optimizer", ["adam", "muon-nsgd"])
def test_sharded_optimizer_equals_unsharded_and_reshards(tmp_path, optimizer):
    """DP2 unsharded is the reference. Sharded at TP2xDP2: the same losses (1e-5: TP sums in another
    order). Its iteration-3 checkpoint resumed sharded at DP4: the reference's losses after 3. The
    reference's (unsharded) checkpoint resumed sharded at DP2: exactly the reference's losses."""
    args = [*ARGS, "--optimizer", optimizer]

    def job(nproc, name, *extra):
        metrics = str(tmp_path / name) + ".jsonl"
        torchrun(nproc, [*args, *extra, "--save", str(tmp_path / name), "--metrics-file", metrics])
        return losses(metrics)

    ref = job(2, "ref")
    assert len(ref) == 6 and ref[6] < ref[1]
    assert_close(job(4, "tp2dp2", *SHARDED, *TP2), ref)
    later = {i: ref[i] for i in (4, 5, 6)}
    assert_close(job(4, "dp4", *SHARDED, "--load", str(tmp_path / "tp2dp2"), "--ckpt-step", "3"), later)
    assert job(2, "dp2", *SHARDED, "--load", str(tmp_path / "ref"), "--ckpt-step", "3") == later


def test_growth_with_sharded_optimizer(tmp_path):
    """1 layer at DP4 grows at iteration 3 to 3 layers at TP2xDP2 (copy init, optimizer state copied to
    the new layers): sharded and unsharded runs log the same losses."""
    grow = ["--num-layers", "1", "--grow-at-iter", "3", "--grow-to-layers", "3", "--grow-init", "copy",
            "--grow-optimizer-state", "copy", "--grow-tensor-model-parallel-size", "2"]
    got = {}
    for name, extra in (("unsharded", []), ("sharded", SHARDED)):
        path = tmp_path / f"{name}.jsonl"
        torchrun(4, [*ARGS[:-2], *grow, *extra, "--metrics-file", str(path)])  # (no --save-interval)
        got[name] = losses(path)
    assert len(got["sharded"]) == 6
    assert_close(got["sharded"], got["unsharded"], rel=1e-6)
