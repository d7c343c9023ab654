"""Data: preprocess round-trip with a real SentencePiece model, datasets, micro-batch order, demo corpus."""

import json
import os
import sys

import numpy
import pytest
import torch
from megatron.core.datasets.indexed_dataset import IndexedDataset

from conftest import run
from megatron_grow.data.datasets import build_datasets, micro_batches
from megatron_grow.data.tokenizer import Tokenizer

DOCS = [
    "The quick brown fox jumps over the lazy dog.\nIt was the best of times, it was the worst of times.",
    "def f(x):\n    return x * 2  # tabs\tand unicode: café, naïve, 東京 ✓",
    "Python is a programming language that lets you work quickly and integrate systems more effectively. " * 20,
    "  leading spaces, CRLF\r\nline endings, a NUL \x00 and trailing blanks   \n\n",
]
N_TOPICS = 40


def preprocess(*args):
    return run([sys.executable, "tools/preprocess_data.py", *map(str, args)], timeout=120, check=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """DOCS as .txt files plus 40 language-reference topics as jsonl, tokenizer trained on them."""
    d = tmp_path_factory.mktemp("corpus")
    files = []
    for i, text in enumerate(DOCS):
        files.append(d / f"doc{i}.txt")
        files[-1].write_bytes(text.encode("utf-8"))  # no newline translation
    from pydoc_data.topics import topics
    extra = d / "topics.jsonl"
    extra.write_text("".join(json.dumps({"text": topics[k]}) + "\n" for k in sorted(topics)[:N_TOPICS]))
    res = preprocess("--input", *files, extra, "--output-prefix", d / "out", "--train-tokenizer",
                     "--vocab-size", 600, "--workers", 2)
    assert res.returncode == 0, res.stdout
    assert f"{len(DOCS) + N_TOPICS} documents" in res.stdout
    return d


def test_round_trip(corpus):
    from pydoc_data.topics import topics

    tok = Tokenizer(str(corpus / "out.tokenizer.model"))
    assert tok.vocab_size == 600 and tok.eod == 2
    ds = IndexedDataset(str(corpus / "out"))
    assert ds.index.dtype is numpy.uint16
    assert len(ds) == len(DOCS) + N_TOPICS
    originals = DOCS + [topics[k] for k in sorted(topics)[:N_TOPICS]]
    for i, text in enumerate(originals):
        ids = ds[i].tolist()
        assert ids[-1] == tok.eod and tok.eod not in ids[:-1]
        assert tok.detokenize(ids) == text


def test_existing_tokenizer_and_json_keys(corpus, tmp_path):
    src = tmp_path / "d.jsonl"
    src.write_text(json.dumps({"body": DOCS[0], "title": "t"}) + "\n\n"
                   + json.dumps({"body": DOCS[1], "title": "u"}) + "\n")
    res = preprocess("--input", src, "--json-keys", "body", "--output-prefix", tmp_path / "o",
                     "--tokenizer-model", corpus / "out.tokenizer.model", "--no-append-eod")
    assert res.returncode == 0, res.stdout
    assert "2 documents" in res.stdout
    tok = Tokenizer(str(corpus / "out.tokenizer.model"))
    ds = IndexedDataset(str(tmp_path / "o"))
    assert [tok.detokenize(ds[i].tolist()) for i in range(2)] == DOCS[:2]
    assert tok.eod not in ds[0].tolist() + ds[1].tolist()


@pytest.mark.parametrize("args,needle", [
    (["--input", "/nonexistent.txt", "--train-tokenizer"], "--input /nonexistent.txt: file not found"),
    (["--input", "tests/test_data.py"], "--tokenizer-model PATH"),
    (["--input", "tests/test_data.py", "--tokenizer-model", "/no.model"], "--tokenizer-model /no.model"),
    (["--input", "tests/test_data.py", "--train-tokenizer", "--vocab-size", "100"], "--vocab-size 100"),
])
def test_errors_name_the_flag(tmp_path, args, needle):
    res = preprocess(*args, "--output-prefix", tmp_path / "x")
    assert res.returncode != 0 and needle in res.stdout, res.stdout
    assert not (tmp_path / "x.bin").exists() and not (tmp_path / "x.idx").exists()


def test_bad_json_key_and_existing_output(corpus, tmp_path):
    src = tmp_path / "d.jsonl"
    src.write_text(json.dumps({"body": "x"}) + "\n")
    res = preprocess("--input", src, "--output-prefix", tmp_path / "o",
                     "--tokenizer-model", corpus / "out.tokenizer.model")
    assert res.returncode != 0 and "no key 'text'" in res.stdout and "--json-keys" in res.stdout, res.stdout
    assert not (tmp_path / "o.bin").exists(), "partial output left behind"
    res = preprocess("--input", src, "--json-keys", "body", "--output-prefix", corpus / "out",
                     "--tokenizer-model", corpus / "out.tokenizer.model")
    assert res.returncode != 0 and "exists" in res.stdout


def test_datasets_and_microbatch_order(corpus):
    tok = Tokenizer(str(corpus / "out.tokenizer.model"))
    seq = 16
    train, valid, test = build_datasets(str(corpus / "out"), tok, seq, 1, "90,10,0", (64, 8, 0),
                                        path_to_cache=str(corpus / "cache"))
    assert len(train) >= 64 and len(valid) >= 8 and test is None
    # held out: the valid split's documents are not in train's
    assert set(train.indices.tolist()).isdisjoint(valid.indices.tolist())
    s = train[0]
    assert s["tokens"].shape == (seq,) and torch.equal(s["tokens"][1:], s["labels"][:-1])
    # a sample is seq + 1 consecutive tokens of the token stream
    text = tok.detokenize(s["tokens"].tolist() + s["labels"][-1:].tolist())
    assert text and len(tok.tokenize(text)) <= seq + 1
    # DP1 with 2 micro-batches sees the same global batch as DP2 with one each, at any offset
    for consumed in (0, 8):
        one = micro_batches(train, consumed, 2, 0, 1)
        a, b = next(one), next(one)
        r0, r1 = next(micro_batches(train, consumed, 2, 0, 2)), next(micro_batches(train, consumed, 2, 1, 2))
        for k in ("tokens", "labels", "loss_mask", "position_ids"):
            assert torch.equal(torch.cat([a[k], b[k]]), torch.cat([r0[k], r1[k]]))
        assert torch.equal(a["tokens"][0], train[consumed]["tokens"])
    assert a["loss_mask"].dtype == torch.float32 and a["tokens"].dtype == torch.long
    assert a["tokens"].shape == (2, seq) and torch.equal(a["position_ids"][1], torch.arange(seq))
    # exhaustion is an error, not a silent wrap
    it = micro_batches(valid, len(valid) - 1, 2, 0, 1)
    with pytest.raises(IndexError, match="exhausted"):
        next(it)
    # a held-out split with no documents is refused (megatron would loop forever)
    with pytest.raises(ValueError, match="valid split gets none"):
        build_datasets(str(corpus / "out"), tok, seq, 1, "999,1,0", (64, 8, 0))


def test_mock_data():
    train, valid, _ = build_datasets(None, None, 16, 1, "98,2,0", (8, 4, 0), mock=True, vocab_size=100)
    s = next(micro_batches(train, 0, 4, 0, 1))
    assert s["tokens"].shape == (4, 16) and int(s["tokens"].max()) < 100
    assert len(valid) >= 4


DEMO_RANK = """
import json, os, sys, torch.distributed as dist
from megatron_grow.data.corpus import demo_corpus
from megatron_grow.data.datasets import build_datasets, micro_batches
from megatron_grow.data.tokenizer import Tokenizer
dist.init_process_group("gloo")
prefix, model = demo_corpus(vocab_size=512, max_chars=300_000)
tok = Tokenizer(model)
train, valid, _ = build_datasets(prefix, tok, 32, 7, "90,10,0", (16, 4, 0))
b = next(micro_batches(train, 4, 2, dist.get_rank(), 2))
with open(os.path.join(sys.argv[1], f"rank{dist.get_rank()}.json"), "w") as f:
    json.dump({"prefix": prefix, "model": model, "tokens": b["tokens"].tolist()}, f)
dist.destroy_process_group()
"""


def test_demo_corpus_concurrent_ranks(tmp_path):
    """Two torchrun ranks build the (small) demo corpus at once, then build datasets collectively."""
    script = tmp_path / "rank.py"
    script.write_text(DEMO_RANK)
    cache = tmp_path / "cache"
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(script), str(tmp_path)], timeout=180, env={"MEGATRON_GROW_CACHE": str(cache)})
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    root = cache / "demo_corpus_v2_vocab512_chars300000"
    assert r0["prefix"] == r1["prefix"] == str(root / "demo") and r0["model"] == r1["model"]
    assert sorted(p.name for p in cache.iterdir()) == [root.name, root.name + ".lock"]  # no temp dir left
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["documents"] > 50 and manifest["vocab_size"] == 512

    tok = Tokenizer(r0["model"])
    ds = IndexedDataset(r0["prefix"])
    assert len(ds) == manifest["documents"] and int(ds.sequence_lengths.sum()) == manifest["tokens"]
    text = json.loads(open(root / "demo.jsonl").readline())["text"]
    assert tok.detokenize(ds[0].tolist()) == text and "lambda" in "".join(
        tok.detokenize(ds[i].tolist()) for i in range(len(ds)))
    # rank r got samples 4 + 2r, 4 + 2r + 1: together the same as one process reading 4..7
    from megatron_grow.data.corpus import demo_corpus
    assert demo_corpus(cache_dir=str(root), vocab_size=512, max_chars=300_000) == (r0["prefix"], r0["model"])
    train, _, _ = build_datasets(r0["prefix"], tok, 32, 7, "90,10,0", (16, 4, 0))
    one = micro_batches(train, 4, 2, 0, 1)
    assert next(one)["tokens"].tolist() == r0["tokens"] and next(one)["tokens"].tolist() == r1["tokens"]


def test_bad_input_is_refused(corpus, tmp_path):
    """Empty and non-text input fail naming the file; nothing is written."""
    empty, binary = tmp_path / "empty.txt", tmp_path / "blob.txt"
    empty.write_text("")
    binary.write_bytes(bytes(range(256)) * 4)
    model = corpus / "out.tokenizer.model"
    for args, needle in ([("--input", empty, "--tokenizer-model", model), "hold no text"],
                         [("--input", empty, "--train-tokenizer"), "hold no text"],
                         [("--input", empty, binary, "--tokenizer-model", model), f"--input {binary}: not UTF-8 text"]):
        res = preprocess(*args, "--output-prefix", tmp_path / "o")
        assert res.returncode != 0 and needle in res.stdout, res.stdout
        assert not list(tmp_path.glob("o.*")), "partial output left behind"


def test_data_of_another_tokenizer_is_refused(corpus, tmp_path):
    """Data preprocessed with a 600-token tokenizer, trained with a 340-token one: refused at startup
    naming both files and the largest id (it was a raw embedding IndexError on every rank); with its own
    tokenizer it passes."""
    from megatron_grow import config
    from megatron_grow.data import resolve_data_flags
    from megatron_grow.finalize import finalize

    res = preprocess("--input", corpus / "doc0.txt", "--output-prefix", tmp_path / "small", "--train-tokenizer",
                     "--vocab-size", 340)
    assert res.returncode == 0, res.stdout

    def check(tokenizer):
        cfg = config.parse_args(["--data-path", str(corpus / "out"), "--tokenizer-model", str(tokenizer),
                                 "--device", "cpu"])
        resolve_data_flags(cfg)
        return finalize(cfg, 1, "cpu")

    with pytest.raises(config.ConfigError) as e:
        check(tmp_path / "small.tokenizer.model")
    msg = " ".join(e.value.problems)
    assert f"{corpus / 'out'}.bin holds token ids up to 5" in msg and "has 340 tokens" in msg, msg
    assert check(corpus / "out.tokenizer.model").vocab_size == 600


def test_damaged_data_files_are_named_at_startup(corpus, tmp_path):
    import shutil

    from megatron_grow import config
    from megatron_grow.finalize import finalize

    def found(prefix):
        cfg = config.parse_args(["--data-path", str(prefix), "--tokenizer-model", str(corpus / "out.tokenizer.model"),
                                 "--device", "cpu"])
        with pytest.raises(config.ConfigError) as e:
            finalize(cfg, 1, "cpu")
        return " ".join(e.value.problems)

    for name, damage, needle in [("short_bin", lambda p: p.write_bytes(p.read_bytes()[:-10]), "out.bin has"),
                                 ("short_idx", lambda p: p.write_bytes(p.read_bytes()[:-8]), "truncated or damaged"),
                                 ("bad_idx", lambda p: p.write_bytes(b"garbage"), "not a megatron index")]:
        d = tmp_path / name
        d.mkdir()
        for ext in (".bin", ".idx"):
            shutil.copy(corpus / ("out" + ext), d / ("out" + ext))
        damage(d / ("out" + (".bin" if "bin" in name else ".idx")))
        msg = found(d / "out")
        assert needle in msg and str(d / "out") in msg and "tools/preprocess_data.py" in msg, msg


def test_regenerated_corpus_gets_its_own_index_cache(corpus, tmp_path):
    """megatron's index cache is keyed by prefix and flags, not contents: a corpus regenerated under
    the same prefix must not reuse the old indices."""
    import shutil

    tok = Tokenizer(str(corpus / "out.tokenizer.model"))
    prefix = tmp_path / "c"
    for ext in (".bin", ".idx"):
        shutil.copy(corpus / ("out" + ext), str(prefix) + ext)
    first, _, _ = build_datasets(str(prefix), tok, 16, 1, "100,0,0", (32, 0, 0))
    small = tmp_path / "small.txt"
    small.write_text(DOCS[2])
    for ext in (".bin", ".idx"):
        os.remove(str(prefix) + ext)
    res = preprocess("--input", small, "--output-prefix", prefix, "--tokenizer-model", corpus / "out.tokenizer.model")
    assert res.returncode == 0, res.stdout
    again, _, _ = build_datasets(str(prefix), tok, 16, 1, "100,0,0", (32, 0, 0))
    assert len(again.document_index) != len(first.document_index) or len(again) != len(first)
    again[len(again) - 1]  # every sample of the new corpus is readable (a stale cache: IndexError)
    assert len(os.listdir(tmp_path / "c" / "cache")) == 2  # one cache per corpus contents
