"""Same run on different layouts gives the same losses: TP2xPP2 and DP2 vs TP1xPP1 (fp32, gloo)."""

import pytest

from conftest import TINY, assert_close, losses, torchrun

ARGS = ["--mock-data", "--vocab-size", "1000", "--micro-batch-size", "2", "--global-batch-size", "8",
        "--train-iters", "5", "--eval-interval", "100", "--lr", "1e-2", "--lr-warmup-iters", "1"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = {}
    for model in ("llama3", "gpt2"):
        path = tmp_path_factory.mktemp("ref") / f"{model}.jsonl"
        torchrun(1, ["--model", model, *TINY, *ARGS, "--num-layers", "2", "--metrics-file", str(path)])
        out[model] = losses(path)
        assert len(out[model]) == 5
    return out


@pytest.mark.parametrize("model", ["llama3", "gpt2"])
@pytest.mark.parametrize("layout", [["--tensor-model-parallel-size", "2", "--pipeline-model-parallel-size", "2"], []],
                         ids=["tp2pp2", "dp2"])
def test_layout_matches_single_process(reference, tmp_path, model, layout):
    nproc = 4 if layout else 2
    path = tmp_path / "m.jsonl"
    torchrun(nproc, ["--model", model, *TINY, *ARGS, "--num-layers", "2", *layout, "--metrics-file", str(path)])
    assert_close(losses(path), reference[model], rel=1e-5)
    # the loss actually moved: a run that does not train cannot pass by accident
    first, last = reference[model][1], reference[model][5]
    assert last < first


def test_uneven_pipeline_split_with_explicit_first_stage(tmp_path):
    """3 layers over PP2 with --decoder-first-pipeline-num-layers 1: the same losses as PP1."""
    ref, got = tmp_path / "ref.jsonl", tmp_path / "pp.jsonl"
    common = ["--model", "llama3", *TINY, *ARGS, "--num-layers", "3", "--train-iters", "3"]
    torchrun(1, [*common, "--metrics-file", str(ref)])
    torchrun(2, [*common, "--pipeline-model-parallel-size", "2", "--decoder-first-pipeline-num-layers", "1",
                 "--metrics-file", str(got)])
    assert_close(losses(got), losses(ref))


def test_explicit_per_stage_layer_list(tmp_path):
    """--pipeline-layers 1,3: 4 layers over PP2 as one and three; the same losses as PP1."""
    ref, got = tmp_path / "ref.jsonl", tmp_path / "pp.jsonl"
    common = ["--model", "gpt2", *TINY, *ARGS, "--num-layers", "4", "--train-iters", "3"]
    torchrun(1, [*common, "--metrics-file", str(ref)])
    torchrun(2, [*common, "--pipeline-model-parallel-size", "2", "--pipeline-layers", "1,3",
                 "--metrics-file", str(got)])
    assert_close(losses(got), losses(ref))
