"""Data: preprocess round-trip with a real SentencePiece model, datasets, micro-batch order."""

import json
import sys

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
]


def preprocess(*args):
    return run([sys.executable, "tools/preprocess_data.py", *map(str, args)], timeout=120, check=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    files = []
    for i, text in enumerate(DOCS):
        files.append(d / f"doc{i}.txt")
        files[-1].write_text(text, encoding="utf-8")
    # enough extra real text for the tokenizer trainer and a held-out split
    from pydoc_data.topics import topics
    extra = d / "topics.jsonl"
    extra.write_text("".join(json.dumps({"text": t}) + "\n" for t in list(topics.values())[:40]))
    res = preprocess("--input", *files, extra, "--output-prefix", d / "out", "--train-tokenizer", "--vocab-size", 600)
    assert res.returncode == 0, res.stdout
    assert "43 documents" in res.stdout
    return d


def test_round_trip(corpus):
    tok = Tokenizer(str(corpus / "out.tokenizer.model"))
    ds = IndexedDataset(str(corpus / "out"))
    assert len(ds.document_indices) - 1 == 43
    for i, text in enumerate(DOCS):
        ids = ds[i].tolist()
        assert ids[-1] == tok.eod and tok.eod not in ids[:-1]
        assert tok.detokenize(ids) == text


def test_existing_tokenizer_and_json_keys(corpus, tmp_path):
    src = tmp_path / "d.jsonl"
    src.write_text(json.dumps({"body": DOCS[0], "title": "t"}) + "\n" + json.dumps({"body": DOCS[1], "title": "u"}) + "\n")
    res = preprocess("--input", src, "--json-keys", "body", "--output-prefix", tmp_path / "o",
                     "--tokenizer-model", corpus / "out.tokenizer.model", "--no-append-eod")
    assert res.returncode == 0, res.stdout
    tok = Tokenizer(str(corpus / "out.tokenizer.model"))
    ds = IndexedDataset(str(tmp_path / "o"))
    assert [tok.detokenize(ds[i].tolist()) for i in range(2)] == DOCS[:2]
    assert tok.eod not in ds[0].tolist()


@pytest.mark.parametrize("args,needle", [
    (["--input", "/nonexistent.txt", "--train-tokenizer"], "--input /nonexistent.txt: file not found"),
    (["--input", "tests/test_data.py"], "--tokenizer-model PATH"),
    (["--input", "tests/test_data.py", "--tokenizer-model", "/no.model"], "--tokenizer-model /no.model"),
])
def test_errors_name_the_flag(tmp_path, args, needle):
    res = preprocess(*args, "--output-prefix", tmp_path / "x")
    assert res.returncode != 0 and needle in res.stdout, res.stdout
    assert not (tmp_path / "x.bin").exists()


def test_bad_json_key_and_existing_output(corpus, tmp_path):
    src = tmp_path / "d.jsonl"
    src.write_text(json.dumps({"body": "x"}) + "\n")
    res = preprocess("--input", src, "--output-prefix", tmp_path / "o", "--tokenizer-model", corpus / "out.tokenizer.model")
    assert res.returncode != 0 and "no key 'text'" in res.stdout and "--json-keys" in res.stdout
    res = preprocess("--input", src, "--json-keys", "body", "--output-prefix", corpus / "out",
                     "--tokenizer-model", corpus / "out.tokenizer.model")
    assert res.returncode != 0 and "exists" in res.stdout


def test_datasets_and_microbatch_order(corpus):
    tok = Tokenizer(str(corpus / "out.tokenizer.model"))
    train, valid, _ = build_datasets(str(corpus / "out"), tok, 16, 1, "90,10,0", (64, 8, 0),
                                     path_to_cache=str(corpus / "cache"))
    assert len(train) >= 64 and len(valid) >= 8
    s = train[0]
    assert s["tokens"].shape == (16,) and torch.equal(s["tokens"][1:], s["labels"][:-1])
    # DP1 with 2 micro-batches sees the same global batch as DP2 with one each
    one = micro_batches(train, 8, 2, 0, 1)
    a, b = next(one), next(one)
    r0, r1 = next(micro_batches(train, 8, 2, 0, 2)), next(micro_batches(train, 8, 2, 1, 2))
    assert torch.equal(torch.cat([a["tokens"], b["tokens"]]), torch.cat([r0["tokens"], r1["tokens"]]))
    assert a["loss_mask"].dtype == torch.float32 and a["tokens"].dtype == torch.long


def test_mock_data():
    train, valid, _ = build_datasets(None, None, 16, 1, "98,2,0", (8, 4, 0), mock=True, vocab_size=100)
    s = next(micro_batches(train, 0, 4, 0, 1))
    assert s["tokens"].shape == (4, 16) and int(s["tokens"].max()) < 100


def test_demo_corpus_small(tmp_path):
    from megatron_grow.data.corpus import demo_corpus

    prefix, model = demo_corpus(cache_dir=str(tmp_path / "demo"), vocab_size=512, max_chars=300_000)
    tok = Tokenizer(model)
    ds = IndexedDataset(prefix)
    assert tok.vocab_size == 512 and len(ds) > 50
    assert "lambda" in "".join(tok.detokenize(ds[i].tolist()) for i in range(len(ds)))
    assert demo_corpus(cache_dir=str(tmp_path / "demo"), vocab_size=512, max_chars=300_000) == (prefix, model)
