"""Raw text (text files, jsonl) -> megatron indexed ``.bin/.idx``, one document per text.

The encoding path shared by ``tools/preprocess_data.py`` and the bundled demo corpus. Files are
written with megatron-core's ``IndexedDatasetBuilder``, token dtype chosen as Megatron-LM does
(``DType.optimal_dtype``: uint16 when the vocabulary has fewer than 65500 entries, else int32).
"""

from __future__ import annotations

import json
import multiprocessing
import os

import numpy as np


def read_documents(paths: list[str], json_keys: list[str] = ("text",)):
    """Yield document texts in order: a ``.jsonl``/``.json`` file gives one document per non-empty
    line and key in ``json_keys`` (each value must be a string); any other file is one document,
    read as is (line endings kept).
    A missing key or a non-string value raises ValueError naming the file, line and --json-keys."""
    for path in paths:
        if path.endswith((".jsonl", ".json")):
            with open(path, encoding="utf-8") as f:
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
                        if not isinstance(obj[key], str):
                            raise ValueError(f"--input {path}:{n}: --json-keys {key!r} is a "
                                             f"{type(obj[key]).__name__}, not a string")
                        yield obj[key]
        else:
            with open(path, "rb") as f:  # text kept as is (line endings too)
                data = f.read()
            try:
                yield data.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"--input {path}: not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start}); "
                                 "give text or .jsonl files") from None


_worker_tokenizer = None


def _init_worker(model_path: str) -> None:
    global _worker_tokenizer
    from megatron_grow.data.tokenizer import Tokenizer

    _worker_tokenizer = Tokenizer(model_path)


def _encode(text: str) -> list[int]:
    return _worker_tokenizer.tokenize(text)


def encode_to_indexed(texts, tokenizer, output_prefix: str, append_eod: bool = True, workers: int = 1) -> dict:
    """Tokenize ``texts`` (an iterable of str) into ``output_prefix``.bin/.idx, one document each.

    ``tokenizer`` is a ``Tokenizer``; with ``append_eod`` its ``eod`` id ends every document (empty
    documents are then kept as a lone EOD; without it they are skipped). ``workers`` > 1 tokenizes
    in that many processes, in order. On any error the partial output files are removed.
    Returns {"documents", "tokens", "bin", "idx"}."""
    from megatron.core.datasets.indexed_dataset import DType, IndexedDatasetBuilder

    dtype = DType.optimal_dtype(tokenizer.vocab_size)
    bin_path, idx_path = output_prefix + ".bin", output_prefix + ".idx"
    os.makedirs(os.path.dirname(os.path.abspath(output_prefix)), exist_ok=True)
    pool = multiprocessing.Pool(workers, _init_worker, (tokenizer.path,)) if workers > 1 else None
    docs = tokens = 0
    try:
        builder = IndexedDatasetBuilder(bin_path, dtype=dtype)
        encoded = pool.imap(_encode, texts, chunksize=8) if pool else map(tokenizer.tokenize, texts)
        for ids in encoded:
            if append_eod:
                ids.append(tokenizer.eod)
            if not ids:
                continue
            builder.add_document(np.asarray(ids, dtype=dtype), [len(ids)])
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
    return {"documents": docs, "tokens": tokens, "bin": bin_path, "idx": idx_path}
