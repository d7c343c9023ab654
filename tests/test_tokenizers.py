"""Tokenizers from real files (GPT-2's vocab/merges, LLaMA-3's tokenizer.json, Mistral's SentencePiece .model,
fetched by tools/fetch_test_tokenizers.py) against reference implementations, the HF directory round trip,
and tools/preprocess_data.py on every input format, in parallel, read back by megatron-core."""

import filecmp
import gzip
import json
import os
import shutil
from types import SimpleNamespace

import numpy
import pytest
from megatron.core.datasets.indexed_dataset import IndexedDataset

from conftest import tokenizer_files
from megatron_grow.data.tokenizer import build_tokenizer, save_tokenizer, tokenizer_flags_for_dir

SAMPLE = [
    "def f(x):\n    return {'a': x ** 2}  # comment\n\tif x:\n\t\tpass\n\nclass A(B):  \n        ...\n",
    "Unicode: café naïve Ünïcödé, 東京都 北京 日本語のテキスト, 한국어, Ελληνικά, русский, עברית, العربية, "
    "emoji 🙂👍🏽👨‍👩‍👧 🇫🇷 ∑∫√ ﬁ",
    "whitespace   runs\t\t\t and\n\n\n\nnewlines \r\n CRLF  \u00a0nbsp\u3000ideographic space   ",
    "numbers 1234567890 3.14159 1e-10 0xFF, punctuation!?... «quotes» — dashes – 'apostrophes' don't we'll I'M",
    " leading space, trailing space ",
    "",
]
SPECIAL = "text <|endoftext|> and <s> </s> <|begin_of_text|> inside"


def long_document() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics)[:12])


def flags(**kw):
    return SimpleNamespace(**({"tokenizer_type": None, "tokenizer_model": None, "vocab_file": None,
                               "merge_file": None, "vocab_size": None} | kw))


@pytest.fixture(scope="module")
def files():
    return tokenizer_files()


@pytest.fixture(scope="module")
def toks(files):
    """Each real tokenizer built once (the 128k LLaMA-3 one takes a second)."""
    return {"gpt2": build_tokenizer(flags(vocab_file=files["gpt2_vocab"], merge_file=files["gpt2_merges"])),
            "llama3": build_tokenizer(flags(tokenizer_model=files["llama3"])),
            "mistral": build_tokenizer(flags(tokenizer_model=files["mistral"]))}


def tiktoken_gpt2(files):
    """tiktoken's own GPT-2 encoding (a separate implementation from `tokenizers`), from the local files."""
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext.openai_public import r50k_pat_str

    ranks = data_gym_to_mergeable_bpe_ranks(files["gpt2_merges"], files["gpt2_vocab"])
    return tiktoken.Encoding("gpt2-local", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256})


def test_types_sizes_and_eod(toks):
    """Inferred types, the vocabulary (added tokens included) and each tokenizer's end-of-text id."""
    g, l3, m = toks["gpt2"], toks["llama3"], toks["mistral"]
    assert (g.type, g.vocab_size, g.eod) == ("GPT2BPETokenizer", 50257, 50256)
    assert (l3.type, l3.vocab_size, l3.eod) == ("HuggingFaceTokenizer", 128256, 128001)
    assert l3.tk.id_to_token(l3.eod) == "<|end_of_text|>"
    assert (m.type, m.vocab_size, m.eod) == ("SentencePieceTokenizer", 32000, 2)
    assert {t.pad for t in toks.values()} == {-1}


def test_ids_equal_references(files, toks):
    """Ids equal the reference libraries' on code, Unicode, whitespace runs and a long document: tiktoken for
    GPT-2, sentencepiece for the .model, and for LLaMA-3 megatron-core's own HuggingFaceTokenizer (transformers'
    AutoTokenizer, Megatron-LM's path: no BOS) and the `tokenizers` library; detokenize gives the text back."""
    import sentencepiece as spm
    from megatron.core.tokenizers.text.libraries.huggingface_tokenizer import HuggingFaceTokenizer
    from tokenizers import Tokenizer

    texts = [*SAMPLE, long_document()]
    enc = tiktoken_gpt2(files)
    sp = spm.SentencePieceProcessor(model_file=files["mistral"])
    hf = Tokenizer.from_file(files["llama3_json"])
    mc = HuggingFaceTokenizer(files["llama3"], use_fast=True)
    assert mc.eod == toks["llama3"].eod and len(mc.tokenizer) == toks["llama3"].vocab_size
    for text in texts + [SPECIAL]:
        assert toks["gpt2"].tokenize(text) == enc.encode(text, allowed_special="all"), text[:40]
        assert toks["mistral"].tokenize(text) == sp.encode(text), text[:40]
        ids = toks["llama3"].tokenize(text)
        assert ids == hf.encode(text, add_special_tokens=False).ids == mc.text_to_ids(text), text[:40]
    for name, tok in toks.items():
        for text in texts:
            assert tok.detokenize(tok.tokenize(text)) == text, (name, text[:40])
    # <|endoftext|> in the text is GPT-2's EOD, as in transformers' GPT2Tokenizer and Megatron-LM
    assert toks["gpt2"].tokenize("a<|endoftext|>b") == [64, 50256, 65]
    assert toks["llama3"].tokenize(SPECIAL).count(128000) == 1  # an added special token in the text, not a BOS


def test_null_tokenizer():
    """NullTokenizer as Megatron-LM's: --vocab-size N, ids below N, EOD N (N + 1 tokens); the trainer's
    --vocab-size becomes N + 1."""
    from megatron_grow import config
    from megatron_grow.data import resolve_data_flags

    tok = build_tokenizer(flags(tokenizer_type="NullTokenizer", vocab_size=101))
    assert (tok.vocab_size, tok.eod) == (101, 100)
    assert tok.tokenize(" 5 7\n99 ") == [5, 7, 99] and tok.detokenize([5, 7, 100]) == "5 7"
    for text, needle in (("5 100", "token id 100 is outside [0, 100)"), ("5 x", "space-separated token ids")):
        with pytest.raises(ValueError, match=needle.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
            tok.tokenize(text)
    cfg = config.parse_args(["--tokenizer-type", "NullTokenizer", "--vocab-size", "100", "--data-path", "/no/x"])
    resolve_data_flags(cfg)
    assert cfg.vocab_size == 101 and build_tokenizer(cfg).eod == 100


def test_flags_and_bad_files(files, tmp_path):
    """Type inference, and one message naming the flag and the file for each bad input."""
    from megatron_grow import config
    from megatron_grow.data import data_problems, resolve_data_flags
    from megatron_grow.data.tokenizer import infer_tokenizer_type

    assert infer_tokenizer_type(flags(tokenizer_model="x.model")) == "SentencePieceTokenizer"
    assert infer_tokenizer_type(flags(tokenizer_model=files["llama3_json"])) == "HuggingFaceTokenizer"
    assert infer_tokenizer_type(flags(tokenizer_model=files["llama3"])) == "HuggingFaceTokenizer"
    assert infer_tokenizer_type(flags(vocab_file="v.json", merge_file="m.txt")) == "GPT2BPETokenizer"
    garbage = tmp_path / "garbage.model"
    garbage.write_bytes(b"\x00\x01 not a model")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    cases = [
        (flags(tokenizer_model=str(tmp_path / "no.model")), f"--tokenizer-model {tmp_path / 'no.model'}: file not"),
        (flags(tokenizer_model="meta-llama/Meta-Llama-3-8B"), "hub names are not downloaded"),
        (flags(tokenizer_model=str(garbage)), "not a SentencePiece .model"),
        (flags(tokenizer_model=files["gpt2_vocab"]), "not a HuggingFace tokenizer.json"),
        (flags(tokenizer_model=str(empty_dir)), "the directory has no tokenizer.json"),
        (flags(vocab_file=files["gpt2_merges"], merge_file=files["gpt2_vocab"]), "--vocab-file"),
        (flags(vocab_file=files["gpt2_vocab"], merge_file=files["llama3_json"]), "--merge-file"),
        (flags(tokenizer_type="GPT2BPETokenizer", vocab_file=files["gpt2_vocab"]), "needs --merge-file"),
        (flags(tokenizer_type="NullTokenizer"), "needs --vocab-size"),
        (flags(tokenizer_type="SentencePieceTokenizer", tokenizer_model=files["mistral"],
               vocab_file=files["gpt2_vocab"]), "--vocab-file"),
    ]
    for cfg, needle in cases:
        with pytest.raises((ValueError, OSError)) as e:
            build_tokenizer(cfg)
        assert needle in str(e.value), (needle, str(e.value))
    cfg = config.parse_args(["--data-path", str(tmp_path / "none"), "--vocab-file", files["gpt2_merges"],
                             "--merge-file", files["gpt2_vocab"]])
    resolve_data_flags(cfg)
    assert cfg.tokenizer_type == "GPT2BPETokenizer"
    assert any(p.startswith(f"--vocab-file {files['gpt2_merges']}: not a GPT-2") for p in data_problems(cfg))


def test_cache_key_is_content(files, toks, tmp_path):
    """unique_identifiers (the dataset index cache key) follow the tokenizer's content, not its path."""
    shutil.copytree(files["llama3"], tmp_path / "moved")
    v, m = shutil.copy(files["gpt2_vocab"], tmp_path / "v.json"), shutil.copy(files["gpt2_merges"], tmp_path / "m")
    assert build_tokenizer(flags(tokenizer_model=str(tmp_path / "moved"))).unique_identifiers == \
        toks["llama3"].unique_identifiers
    assert build_tokenizer(flags(vocab_file=v, merge_file=m)).unique_identifiers == toks["gpt2"].unique_identifiers
    assert len({json.dumps(t.unique_identifiers, sort_keys=True) for t in toks.values()}) == 3


def test_hf_directory_round_trip(toks, tmp_path):
    """save_tokenizer writes files transformers' AutoTokenizer loads with the same ids (GPT-2, LLaMA-3, a
    SentencePiece model trained here; Mistral's .model is refused, saying why); tokenizer_flags_for_dir reads them
    back as the same tokenizer; nothing is overwritten."""
    from transformers import AutoTokenizer

    from megatron_grow.data.tokenizer import train_tokenizer

    texts = [*SAMPLE, long_document()[:20000]]
    (tmp_path / "train.txt").write_text("\n".join(texts))
    ours = build_tokenizer(flags(tokenizer_model=train_tokenizer([str(tmp_path / "train.txt")],
                                                                 str(tmp_path / "sp"), 600)))
    for name, tok in [*toks.items(), ("trained", ours)]:
        if name == "mistral":  # SentencePiece's whitespace splitting of this model has no tokenizer.json form
            with pytest.raises(ValueError, match="does not give SentencePiece's ids"):
                save_tokenizer(SimpleNamespace(**({"vocab_size": None} | tok.spec)), str(tmp_path / name))
            continue
        out = tmp_path / name
        written = save_tokenizer(SimpleNamespace(**({"vocab_size": None} | tok.spec)), str(out))
        assert written and all(os.path.isfile(f) for f in written)
        theirs = AutoTokenizer.from_pretrained(str(out))
        for text in texts:
            assert theirs.encode(text, add_special_tokens=False) == tok.tokenize(text), (name, text[:40])
        assert theirs.convert_tokens_to_ids(theirs.eos_token) == tok.eod
        again = build_tokenizer(flags(**tokenizer_flags_for_dir(str(out))))
        assert again.vocab_size == tok.vocab_size and again.eod == tok.eod
        assert again.tokenize(texts[1]) == tok.tokenize(texts[1])
        with pytest.raises(FileExistsError):
            save_tokenizer(SimpleNamespace(**({"vocab_size": None} | tok.spec)), str(out))
    assert tokenizer_flags_for_dir(str(tmp_path)) is None
    assert save_tokenizer(flags(tokenizer_type="NullTokenizer", vocab_size=10), str(tmp_path / "null")) == []


def test_preprocess_formats_and_workers(files, toks, tmp_path):
    """.txt, .jsonl, .jsonl.gz, .parquet and a glob give the same documents; --workers 2 writes the same bytes as
    --workers 1; megatron-core's IndexedDataset reads them (int32 for the 128k vocabulary, uint16 for GPT-2)."""
    import pyarrow
    import pyarrow.parquet

    from tools import preprocess_data

    docs = [d for d in SAMPLE if d] + [long_document()[:30000]]
    for i, d in enumerate(docs):
        (tmp_path / f"doc{i}.txt").write_bytes(d.encode())
    lines = "".join(json.dumps({"text": d, "other": 1}) + "\n" for d in docs)
    (tmp_path / "a.jsonl").write_text(lines)
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as f:
        f.write(lines)
    pyarrow.parquet.write_table(pyarrow.table({"text": docs}), tmp_path / "c.parquet")
    inputs = {"txt": [str(tmp_path / "doc*.txt")], "jsonl": [str(tmp_path / "a.jsonl")],
              "gz": [str(tmp_path / "b.jsonl.gz")], "parquet": [str(tmp_path / "c.parquet")]}
    gpt2 = ["--vocab-file", files["gpt2_vocab"], "--merge-file", files["gpt2_merges"]]
    for name, inp in inputs.items():
        preprocess_data.main(["--input", *inp, "--output-prefix", str(tmp_path / name), *gpt2])
        ds = IndexedDataset(str(tmp_path / name))
        assert ds.index.dtype is numpy.uint16 and len(ds) == len(docs)
        assert [toks["gpt2"].detokenize(ds[i]) for i in range(len(ds))] == docs, name
        assert all(ds[i][-1] == 50256 for i in range(len(ds)))
    for w in (1, 2):
        preprocess_data.main(["--input", str(tmp_path / "a.jsonl"), str(tmp_path / "c.parquet"), "--output-prefix",
                              str(tmp_path / f"l3_w{w}"), "--tokenizer-model", files["llama3"], "--workers", str(w)])
    for ext in (".bin", ".idx"):
        assert filecmp.cmp(tmp_path / f"l3_w1{ext}", tmp_path / f"l3_w2{ext}", shallow=False)
    ds = IndexedDataset(str(tmp_path / "l3_w1"))
    assert ds.index.dtype is numpy.int32 and len(ds) == 2 * len(docs)
    assert ds[len(docs) - 1].tolist() == toks["llama3"].tokenize(docs[-1]) + [128001]
    (tmp_path / "ids.jsonl").write_text('{"text": "1 2 3"}\n{"text": "4 5"}\n')
    preprocess_data.main(["--input", str(tmp_path / "ids.jsonl"), "--output-prefix", str(tmp_path / "null"),
                          "--tokenizer-type", "NullTokenizer", "--vocab-size", "6"])
    ds = IndexedDataset(str(tmp_path / "null"))
    assert [ds[i].tolist() for i in range(2)] == [[1, 2, 3, 6], [4, 5, 6]]


def test_preprocess_refusals(files, tmp_path, capsys):
    """The tool's bad inputs, each named; data of one tokenizer refused with another, naming its flags."""
    from megatron_grow import config
    from megatron_grow.data import data_problems, resolve_data_flags
    from tools import preprocess_data

    (tmp_path / "a.jsonl").write_text('{"text": "hello world"}\n' * 4)
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    (tmp_path / "bad.jsonl.gz").write_bytes(b"not gzip")
    out = str(tmp_path / "o")
    for argv, needle in [
        (["--input", str(tmp_path / "*.none"), "--vocab-size", "5", "--tokenizer-type", "NullTokenizer"],
         "no file matches"),
        (["--input", str(tmp_path / "a.jsonl")], "--tokenizer-model PATH"),
        (["--input", str(tmp_path / "a.jsonl"), "--tokenizer-model", files["mistral"], "--vocab-size", "9"],
         "--vocab-size 9: the vocabulary is"),
        (["--input", str(tmp_path / "bad.parquet"), "--tokenizer-model", files["mistral"]], "not a parquet file"),
        (["--input", str(tmp_path / "bad.jsonl.gz"), "--tokenizer-model", files["mistral"]], "cannot read it"),
        (["--input", str(tmp_path / "a.jsonl"), "--json-keys", "body", "--tokenizer-model", files["mistral"]],
         "no key 'body'"),
    ]:
        with pytest.raises(SystemExit) as e:
            preprocess_data.main(["--output-prefix", out, *argv])
        assert needle in capsys.readouterr().err + str(e.value.code), needle
        assert not os.path.exists(out + ".bin")
    preprocess_data.main(["--input", str(tmp_path / "a.jsonl"), "--output-prefix", out, "--tokenizer-model",
                          files["llama3"]])
    cfg = config.parse_args(["--data-path", out, "--vocab-file", files["gpt2_vocab"], "--merge-file",
                             files["gpt2_merges"]])
    resolve_data_flags(cfg)
    assert cfg.vocab_size == 50257
    assert any(f"but --vocab-file {files['gpt2_vocab']} --merge-file" in p for p in data_problems(cfg))


def test_tiktokenizer_and_pattern(tmp_path, capsys):
    """TikTokenizer: megatron-core's on a local tiktoken vocabulary (ids after its 1000 special ones, EOD its
    </s>), split by --tiktoken-pattern; that flag with another type only warns that it has no effect."""
    import base64

    import tiktoken
    from megatron.core.tokenizers.text.libraries.tiktoken_tokenizer import _PATTERN_TIKTOKEN_V1

    from megatron_grow import config
    from megatron_grow.data import resolve_data_flags

    pieces = [bytes([i]) for i in range(256)] + [b"he", b"ll", b"hell", b"hello", b" w", b" wor", b"ld", b" world"]
    vocab = [{"rank": i, "token_bytes": base64.b64encode(p).decode(), "token_str": p.decode("latin-1")}
             for i, p in enumerate(pieces)]
    path = tmp_path / "tik.json"
    path.write_text(json.dumps(vocab))
    tok = build_tokenizer(flags(tokenizer_type="TikTokenizer", tokenizer_model=str(path), tiktoken_pattern="v1"))
    assert (tok.vocab_size, tok.eod) == (1000 + len(pieces), 2)
    ref = tiktoken.Encoding("ref", pat_str=_PATTERN_TIKTOKEN_V1, special_tokens={},
                            mergeable_ranks={p: i + 1000 for i, p in enumerate(pieces)})
    for text in ("hello world", *SAMPLE):
        assert tok.tokenize(text) == ref.encode(text) and tok.detokenize(tok.tokenize(text)) == text
    assert tok.tokenize("hello world") == [1259, 1263]
    cfg = config.parse_args(["--data-path", str(tmp_path / "x"), "--tokenizer-model", str(path), "--tokenizer-type",
                             "SentencePieceTokenizer", "--tiktoken-pattern", "v2"])
    resolve_data_flags(cfg)
    assert "--tiktoken-pattern v2 has no effect with --tokenizer-type SentencePieceTokenizer" in capsys.readouterr().err
