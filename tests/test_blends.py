"""Dataset blends (--data-path with weights or several prefixes, --train/valid/test-data-path): the shares
drawn, the held-out documents, the order at any DP size and with worker processes, the checks at launch,
and resuming on other data (refused, or --override-data-blend with a warning)."""

import collections
import json
import random
import shutil

import numpy
import pytest
import torch
from megatron.core.datasets.indexed_dataset import IndexedDataset

from conftest import TINY
from megatron_grow import config
from megatron_grow.data import Data, resolve_data_flags
from megatron_grow.data.datasets import BATCH_KEYS, micro_batches
from megatron_grow.finalize import finalize

WORDS = ["alpha", "beta", "gamma", "delta", "kappa", "lambda", "sigma", "omega"]
TRAIN, VALID = 50 * 8, 2 * 8  # the samples Data builds: --train-iters x and --eval-iters x --global-batch-size


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """Two tiny corpora made with tools/preprocess_data.py and the demo tokenizer: numbers and words, so each
    sample tells its origin by its tokens ("only": the ids one corpus has and the other has not)."""
    from megatron_grow.data.corpus import demo_corpus
    from tools.preprocess_data import main as preprocess

    d = tmp_path_factory.mktemp("blends")
    _, model = demo_corpus()
    rng = random.Random(0)
    make = {"digits": lambda: " ".join(str(rng.randrange(10 ** 6)) for _ in range(60)),
            "words": lambda: " ".join(rng.choice(WORDS) for _ in range(60))}
    ids = {}
    for name, text in make.items():
        (d / f"{name}.jsonl").write_text("".join(json.dumps({"text": text()}) + "\n" for _ in range(50)))
        preprocess(["--input", str(d / f"{name}.jsonl"), "--output-prefix", str(d / name), "--tokenizer-model", model])
        ds = IndexedDataset(str(d / name))
        ids[name] = set(numpy.unique(numpy.concatenate([ds[i] for i in range(len(ds))])).tolist())
    only = {"digits": ids["digits"] - ids["words"], "words": ids["words"] - ids["digits"]}
    assert only["digits"] and only["words"]
    return d, model, only


def flags(corpora, *data):
    d, model, _ = corpora
    return ["--model", "llama3", *TINY, "--num-layers", "1", "--tokenizer-model", model, "--micro-batch-size", "4",
            "--global-batch-size", "8", "--train-iters", "50", "--eval-iters", "2", "--lr-warmup-iters", "1",
            "--data-cache-path", str(d / "cache"),
            *[str(d / w) if w in ("digits", "words") else w for w in data]]


def finalized(argv):
    cfg = config.parse_args(argv)
    resolve_data_flags(cfg)
    return finalize(cfg, 1, "cpu")


def origin(sample, only) -> str:
    seen = set(sample["tokens"].tolist()) | set(sample["labels"].tolist())
    found = [name for name, ids in only.items() if seen & ids]
    assert len(found) == 1, found
    return found[0]


def documents(blend, n) -> dict[str, set]:
    """The documents (ids in their prefix) of the first n samples of a blended split, by prefix."""
    out = collections.defaultdict(set)
    for i in range(n):
        ds = blend.datasets[blend.dataset_index[i]]
        out[ds.dataset.path_prefix].update(ds._query_document_sample_shuffle_indices(
            int(blend.dataset_sample_index[i]))[1].tolist())
    return out


def test_weights_are_sampling_ratios_and_the_held_out_documents_stay_out(world, corpora):
    d, _, only = corpora
    data = Data(finalized(flags(corpora, "--data-path", "0.25", "digits", "0.75", "words", "--split", "90,10,0")),
                0, 1)
    drawn = collections.Counter(origin(data.train[i], only) for i in range(TRAIN))
    assert abs(drawn["digits"] / TRAIN - 0.25) < 0.02, drawn
    held = documents(data.valid, VALID)
    trained = documents(data.train, TRAIN)
    assert set(trained) == {str(d / "digits"), str(d / "words")}
    assert all(trained[p].isdisjoint(held[p]) for p in held), "a held-out document was trained on"
    # several prefixes without weights: in proportion to their tokens, as Megatron-LM (its lengths)
    size = {n: (d / f"{n}.bin").stat().st_size for n in ("digits", "words")}
    data = Data(finalized(flags(corpora, "--data-path", "digits", "words")), 0, 1)
    drawn = collections.Counter(origin(data.train[i], only) for i in range(TRAIN))
    assert abs(drawn["digits"] / TRAIN - size["digits"] / sum(size.values())) < 0.02, (drawn, size)


def test_the_same_batches_at_any_dp_size_with_workers_and_without_mmap(world, corpora):
    """DP1 with two micro-batches takes the samples DP2 takes with one each; --num-workers 2 (and
    --no-mmap-bin-files) reads the same batches as the training process alone."""
    blend = ["--data-path", "0.3", "digits", "0.7", "words"]
    train = Data(finalized(flags(corpora, *blend)), 0, 1).train
    for consumed in (0, 24):
        one = micro_batches(train, consumed, 2, 0, 1)
        a, b = next(one), next(one)
        r0, r1 = next(micro_batches(train, consumed, 2, 0, 2)), next(micro_batches(train, consumed, 2, 1, 2))
        assert all(torch.equal(torch.cat([a[k], b[k]]), torch.cat([r0[k], r1[k]])) for k in BATCH_KEYS)
    want = micro_batches(train, 8, 4, 1, 2)
    data = Data(finalized(flags(corpora, *blend, "--num-workers", "2", "--no-mmap-bin-files")), 1, 2)
    got = data.train_iterator(8)
    for _ in range(6):
        x, y = next(want), next(got)
        assert all(torch.equal(x[k], y[k]) for k in BATCH_KEYS)
    got.close()  # (its workers end)


def test_a_part_of_split_with_no_documents_and_no_samples_is_not_built(world, corpora):
    """--split 949,50,1 on 50 documents leaves the test part none: megatron-core loops forever building it, even
    for the 0 samples asked of it; it is not built (an alarm fails the test instead of hanging it)."""
    import signal

    def hung(*_):
        raise TimeoutError("building the datasets hung")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        for data in (["--data-path", "digits"], ["--data-path", "0.5", "digits", "0.5", "words"]):
            built = Data(finalized(flags(corpora, *data, "--split", "949,50,1")), 0, 1)
            assert len(built.train) >= TRAIN and len(built.valid) >= VALID
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_per_split_paths(world, corpora):
    _, _, only = corpora
    data = Data(finalized(flags(corpora, "--train-data-path", "digits", "--valid-data-path", "words")), 0, 1)
    assert {origin(data.train[i], only) for i in range(TRAIN)} == {"digits"}
    assert {origin(data.valid[i], only) for i in range(VALID)} == {"words"}


@pytest.mark.parametrize("data,needle", [
    (["--train-data-path", "digits", "--valid-data-path", "words", "--split", "90,10,0"],
     "--split 90,10,0 does not apply with --train-data-path"),
    (["--data-path", "digits", "--valid-data-path", "words"], "give one data source"),
    (["--train-data-path", "digits"], "--train-data-path needs --valid-data-path"),
    (["--data-path", "0.5", "digits", "0.5", "nothere"], "nothere: file "),
    (["--data-path", "0.5", "digits", "words"], "not a mix"),
    (["--data-path", "0", "digits", "1", "words"], "weight 0 must be a finite number > 0"),
    (["--data-path", "digits", "--split", "999,1,0"], "the valid split gets none of the 50 documents"),
])
def test_bad_data_flags_are_named(corpora, data, needle):
    with pytest.raises(config.ConfigError) as e:
        finalized(flags(corpora, *data))
    assert any(needle in p for p in e.value.problems), e.value.problems


def test_resuming_on_other_data_is_refused_or_overridden(world, corpora, tmp_path, capsys):
    from megatron_grow import checkpointing, runstate
    from megatron_grow.checkpointing import CheckpointError

    d = corpora[0]
    ck = str(tmp_path / "ck")
    cfg = finalized(flags(corpora, "--data-path", "0.25", "digits", "0.75", "words"))
    state = runstate.build_state(cfg, torch.device("cpu"))
    state.consumed_samples = 8
    checkpointing.save(ck, 1, state.module, state.optimizer, state.scheduler, runstate.common_state(cfg, state))
    checkpointing.wait_for_checksums()
    common = checkpointing.read_common_or_raise(ck, 1)
    assert config.saved_config(common["config"]).data_path == cfg.data_path
    assert config.saved_config({"data_path": "old/prefix"}).data_path == ["old/prefix"]  # an older checkpoint's

    def resume(*data):
        return checkpointing.resume_config(finalized(flags(corpora, *data, "--load", ck)))

    assert resume("--data-path", "1", "digits", "3", "words").ckpt_step == 1  # the same ratios
    moved = tmp_path / "moved"
    moved.mkdir()
    for f in ("digits.bin", "digits.idx"):
        shutil.copy(d / f, moved / f)
    resume("--data-path", "0.25", str(moved / "digits"), "0.75", "words")  # the same files elsewhere
    for other in (["--data-path", "0.5", "digits", "0.5", "words"], ["--data-path", "0.25", "words", "0.75", "digits"],
                  ["--data-path", "digits"]):
        with pytest.raises(CheckpointError) as e:
            resume(*other)
        msg = str(e.value)
        assert f"--data-path 0.25 {d / 'digits'} 0.75 {d / 'words'} --split 98,2,0; this run gives --data-path" in msg
        assert "--override-data-blend" in msg and "sample 8" in msg, msg
    capsys.readouterr()
    resume("--data-path", "0.5", "digits", "0.5", "words", "--override-data-blend")
    err = capsys.readouterr().err
    assert "warning: --override-data-blend" in err and f"this run gives --data-path 0.5 {d / 'digits'} 0.5" in err
