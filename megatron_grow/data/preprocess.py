"""Raw text (text files, jsonl, jsonl.gz, parquet) -> megatron indexed ``.bin/.idx``, one document per text.

The encoding path shared by ``tools/preprocess_data.py`` and the bundled demo corpus. Files are
written with megatron-core's ``IndexedDatasetBuilder`` (the format Megatron-LM's training reads and its
tools/preprocess_data.py writes), token dtype chosen as Megatron-LM does (``DType.optimal_dtype``:
uint16 when the vocabulary has fewer than 65500 entries, else int32).
"""

from __future__ import annotations

import glob
import gzip
import json
import multiprocessing
import os

import numpy as np

JSON_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")


def expand_inputs(patterns: list[str]) -> tuple[list[str], list[str]]:
    """(files, problems): each --input as given, or its glob matches in sorted order (a pattern with
    * ? [ that matches nothing, or a path that is not a file, is a problem naming it)."""
    files, problems = [], []
    for pattern in patterns:
        if os.path.isfile(pattern):
            files.append(pattern)
        elif glob.has_magic(pattern):
            matches = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
            files += matches
            if not matches:
                problems.append(f"--input {pattern}: no file matches")
        else:
            problems.append(f"--input {pattern}: file not found")
    return files, problems


def _check_text(path, where, key, value):
    if not isinstance(value, str):
        raise ValueError(f"--input {path}{where}: --json-keys {key!r} is a {type(value).__name__}, not a string")
    return value


def _parquet(path: str, json_keys):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError(f"--input {path}: reading .parquet needs pyarrow: pip install pyarrow "
                         f"(or pip install -e .[dev])") from None
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow.lib.ArrowInvalid and friends
        raise ValueError(f"--input {path}: not a parquet file ({str(e)[:200]})") from None
    have = pf.schema_arrow.names
    missing = [k for k in json_keys if k not in have]
    if missing:
        raise ValueError(f"--input {path}: no column {missing[0]!r} (have {have}); set --json-keys")
    row = 0
    for batch in pf.iter_batches(batch_size=1024, columns=list(json_keys)):
        cols = [batch.column(k).to_pylist() for k in json_keys]
        for values in zip(*cols, strict=True):
            row += 1
            for key, v in zip(json_keys, values, strict=True):
                yield _check_text(path, f" row {row}", key, v)


def read_documents(paths: list[str], json_keys: list[str] = ("text",)):
    """Yield document texts in order: a ``.jsonl``/``.json`` file (``.gz`` too) gives one document per
    non-empty line and key in ``json_keys`` (each value must be a string); a ``.parquet`` file one per
    row and key (column); any other file is one document, read as is (line endings kept).
    A missing key or a non-string value raises ValueError naming the file, line and --json-keys."""
    for path in paths:
        if path.endswith(".parquet"):
            yield from _parquet(path, json_keys)
        elif path.endswith(JSON_SUFFIXES):
            opener = gzip.open if path.endswith(".gz") else open
            try:
                with opener(path, "rt", encoding="utf-8") as f:
                    for n, line in enumerate(f, 1):
                        if not line.strip():
                            continue
                        try:
                            obj = json.loads(line)
                        except json.JSONDecodeError as e:
                            raise ValueError(f"--input {path}:{n}: not a JSON line ({e.msg})") from None
                        for key in json_keys:
                            if not isinstance(obj, dict) or key not in obj:
                                have = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
                                raise ValueError(f"--input {path}:{n}: no key {key!r} (have {have}); set --json-keys")
                            yield _check_text(path, f":{n}", key, obj[key])
            except (gzip.BadGzipFile, EOFError, UnicodeDecodeError) as e:
                raise ValueError(f"--input {path}: cannot read it ({type(e).__name__}: {e})") from None
        else:
            with open(path, "rb") as f:  # text kept as is (line endings too)
                data = f.read()
            try:
                yield data.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"--input {path}: not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start}); "
                                 "give text, .jsonl(.gz) or .parquet files") from None


_worker = None  # (tokenizer, dtype) the worker processes inherit (forked): nothing to load again in them


def _encode_many(texts: list[str]) -> list[np.ndarray]:
    tok, dtype = _worker
    return [np.asarray(tok.tokenize(t), dtype=dtype) for t in texts]


def _chunks(texts, n: int):
    chunk = []
    for t in texts:
        chunk.append(t)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def encode_to_indexed(texts, tokenizer, output_prefix: str, append_eod: bool = True, workers: int = 1) -> dict:
    """Tokenize ``texts`` (an iterable of str) into ``output_prefix``.bin/.idx, one document each.

    ``tokenizer`` is one of data/tokenizer.py's (``build_tokenizer``); with ``append_eod`` its ``eod`` id
    ends every document (empty documents are then kept as a lone EOD; without it they are skipped).
    ``workers`` > 1 tokenizes in that many forked processes (they inherit the tokenizer), in chunks of
    documents, written in input order: the files are identical for any ``workers``.
    On any error the partial output files are removed. Returns {"documents", "tokens", "bin", "idx"}."""
    from megatron.core.datasets.indexed_dataset import DType, IndexedDatasetBuilder

    dtype = DType.optimal_dtype(tokenizer.vocab_size)
    bin_path, idx_path = output_prefix + ".bin", output_prefix + ".idx"
    os.makedirs(os.path.dirname(os.path.abspath(output_prefix)), exist_ok=True)
    global _worker
    pool = None
    if workers > 1:
        _worker = (tokenizer, dtype)
        pool = multiprocessing.get_context("fork").Pool(workers)
    docs = tokens = 0
    eod = np.asarray([tokenizer.eod], dtype=dtype)
    try:
        builder = IndexedDatasetBuilder(bin_path, dtype=dtype)
        if pool:
            encoded = (a for chunk in pool.imap(_encode_many, _chunks(texts, 16)) for a in chunk)
        else:
            encoded = (np.asarray(tokenizer.tokenize(t), dtype=dtype) for t in texts)
        for ids in encoded:
            if append_eod:
                ids = np.concatenate([ids, eod])
            if not len(ids):
                continue
            builder.add_document(ids, [len(ids)])
            docs, tokens = docs + 1, tokens + len(ids)
        if tokens == (docs if append_eod else 0):
            raise ValueError("the --input files hold no text (every document is empty)")
        builder.finalize(idx_path)
    except BaseException:
        for p in (bin_path, idx_path):
            if os.path.exists(p):
                os.remove(p)
        raise
    finally:
        if pool:
            pool.terminate()
            _worker = None
    return {"documents": docs, "tokens": tokens, "bin": bin_path, "idx": idx_path}
