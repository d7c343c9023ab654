"""The bundled demo corpus: real English text that every CPython install carries, no download.

Documents: each topic of the language reference (``pydoc_data.topics``) and the module docstrings
and source of the standard library's .py files (sorted, tests and vendored packages left out), up
to a size cap. On first use a 4096-token SentencePiece model is trained on it and the text is
preprocessed to .bin/.idx in the cache directory; later calls reuse it. Safe when several ranks
call it at once: one builds into a temporary directory and renames it into place.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sysconfig
import tempfile

VERSION = 1
SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "ensurepip",
             "turtledemo", "tkinter", "__pycache__", "pydoc_data", "config-3.11-x86_64-linux-gnu"}


def cache_root() -> str:
    return os.environ.get("MEGATRON_GROW_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "megatron_grow"))


def documents(max_chars: int):
    """The corpus texts, deterministic for a given Python install."""
    from pydoc_data.topics import topics

    total = 0
    for name in sorted(topics):
        total += len(topics[name])
        yield topics[name]
    stdlib = sysconfig.get_paths()["stdlib"]
    for dirpath, dirnames, filenames in os.walk(stdlib):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for fn in sorted(filenames):
            if not fn.endswith(".py") or total >= max_chars:
                continue
            with open(os.path.join(dirpath, fn), encoding="utf-8", errors="replace") as f:
                text = f.read()
            total += len(text)
            yield text


def demo_corpus(cache_dir: str | None = None, vocab_size: int = 4096, max_chars: int = 8_000_000):
    """Build (once) and return (data_prefix, tokenizer_model) of the demo corpus."""
    from megatron_grow.data.preprocess import encode_to_indexed
    from megatron_grow.data.tokenizer import Tokenizer, train_tokenizer

    root = cache_dir or os.path.join(cache_root(), f"demo_corpus_v{VERSION}_{vocab_size}_{max_chars}")
    prefix, model = os.path.join(root, "demo"), os.path.join(root, "demo.tokenizer.model")
    if os.path.isfile(prefix + ".idx"):
        return prefix, model
    os.makedirs(os.path.dirname(root), exist_ok=True)
    with open(root + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder; the others wait here, then find it built
        if not os.path.isfile(prefix + ".idx"):
            tmp = tempfile.mkdtemp(dir=os.path.dirname(root), prefix=".building-")
            try:
                docs = list(documents(max_chars))
                with open(os.path.join(tmp, "demo.jsonl"), "w", encoding="utf-8") as f:
                    for d in docs:
                        f.write(json.dumps({"text": d}) + "\n")
                text = os.path.join(tmp, "train.txt")
                with open(text, "w", encoding="utf-8") as f:
                    f.write("\n".join(docs))
                train_tokenizer([text], os.path.join(tmp, "demo.tokenizer"), vocab_size)
                os.remove(text)
                encode_to_indexed(docs, Tokenizer(os.path.join(tmp, "demo.tokenizer.model")),
                                  os.path.join(tmp, "demo"))
                if os.path.exists(root):
                    shutil.rmtree(root)
                os.rename(tmp, root)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return prefix, model
