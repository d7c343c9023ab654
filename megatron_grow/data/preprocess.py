"""Raw text (files, jsonl) -> megatron indexed .bin/.idx, one document per text, EOD appended."""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder


def read_documents(paths: list[str], json_keys: list[str]):
    """Yield document texts: a .jsonl/.json file gives one per line (each --json-keys value), any
    other file is one document."""
    for path in paths:
        if path.endswith((".jsonl", ".json")):
            with open(path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    obj = json.loads(line)
                    for key in json_keys:
                        if key not in obj:
                            raise KeyError(f"{path}:{n}: no key {key!r} (have {sorted(obj)}); set --json-keys")
                        yield obj[key]
        else:
            with open(path, encoding="utf-8", errors="replace") as f:
                yield f.read()


def encode_to_indexed(texts, tokenizer, output_prefix: str, append_eod: bool = True) -> dict:
    """Write ``output_prefix``.bin/.idx; returns counts. dtype as Megatron: uint16 for small vocabs."""
    dtype = np.uint16 if tokenizer.vocab_size < 65500 else np.int32
    os.makedirs(os.path.dirname(os.path.abspath(output_prefix)), exist_ok=True)
    builder = IndexedDatasetBuilder(output_prefix + ".bin", dtype=dtype)
    docs = tokens = 0
    for text in texts:
        ids = tokenizer.tokenize(text)
        if append_eod:
            ids.append(tokenizer.eod)
        if not ids:
            continue
        builder.add_document(torch.tensor(ids, dtype=torch.int64), [len(ids)])
        docs, tokens = docs + 1, tokens + len(ids)
    builder.finalize(output_prefix + ".idx")
    return {"documents": docs, "tokens": tokens, "bin": output_prefix + ".bin", "idx": output_prefix + ".idx"}
