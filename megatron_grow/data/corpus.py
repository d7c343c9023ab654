"""The bundled demo corpus: real English text and code that every CPython install carries, no download.

Documents, in this order: each topic of the language reference (``pydoc_data.topics``, ~465k
characters of English), then the source of the standard library's ``.py`` files, walked in sorted
order (top-level modules, then packages), leaving out tests, vendored and GUI packages, codec tables
and install-specific files, until ``max_chars`` characters in all. The text depends only on the
Python version (recorded in ``manifest.json``; a cache is reused whichever Python reads it).

On first use ``demo_corpus`` writes the documents as ``demo.jsonl``, trains a SentencePiece model on
them and encodes them to ``demo.bin/.idx`` (the same code as ``tools/preprocess_data.py``) in the
cache directory; later calls reuse it. Cache location: ``cache_dir`` if given, else
``$MEGATRON_GROW_CACHE/demo_corpus_v<N>`` (``MEGATRON_GROW_CACHE`` defaults to
``~/.cache/megatron_grow``; non-default sizes get a suffix). Several processes (torchrun ranks) may
call it at once: one builds, under an exclusive ``fcntl`` lock on ``<dir>.lock``, into a temporary
directory that is renamed into place when complete; the others wait on the lock, then find it built.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import sysconfig
import tempfile
import time

VERSION = 2
DEFAULT_VOCAB = 4096
DEFAULT_MAX_CHARS = 8_000_000
SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "ensurepip",
             "turtledemo", "tkinter", "__pycache__", "pydoc_data", "encodings", "lib-dynload"}


def cache_root() -> str:
    """``$MEGATRON_GROW_CACHE``, else ``~/.cache/megatron_grow``."""
    return os.environ.get("MEGATRON_GROW_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "megatron_grow")


def documents(max_chars: int = DEFAULT_MAX_CHARS):
    """Yield the corpus texts, deterministic for a given Python version; stops once ``max_chars``
    characters have been yielded (the reference topics always come first, whole)."""
    from pydoc_data.topics import topics

    total = 0
    for name in sorted(topics):
        total += len(topics[name])
        yield topics[name]
    stdlib = sysconfig.get_paths()["stdlib"]
    for dirpath, dirnames, filenames in os.walk(stdlib):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("config-"))
        for fn in sorted(filenames):
            if total >= max_chars:
                return
            if not fn.endswith(".py") or fn.startswith("_sysconfigdata"):
                continue
            with open(os.path.join(dirpath, fn), encoding="utf-8", errors="replace") as f:
                text = f.read()
            if text.strip():
                total += len(text)
                yield text


def default_cache_dir(vocab_size: int = DEFAULT_VOCAB, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    name = f"demo_corpus_v{VERSION}"
    if (vocab_size, max_chars) != (DEFAULT_VOCAB, DEFAULT_MAX_CHARS):
        name += f"_vocab{vocab_size}_chars{max_chars}"
    return os.path.join(cache_root(), name)


def demo_corpus(cache_dir: str | None = None, vocab_size: int = DEFAULT_VOCAB,
                max_chars: int = DEFAULT_MAX_CHARS) -> tuple[str, str]:
    """Build (once) and return ``(data_prefix, tokenizer_model)`` of the demo corpus.

    ``data_prefix`` names ``<dir>/demo.bin`` and ``.idx`` (pass it as ``--data-path``);
    ``tokenizer_model`` is ``<dir>/demo.tokenizer.model``. ``<dir>/manifest.json`` records the
    sizes and build time. A ``cache_dir`` that exists and holds anything else is refused."""
    root = os.path.abspath(cache_dir or default_cache_dir(vocab_size, max_chars))
    prefix, model = os.path.join(root, "demo"), os.path.join(root, "demo.tokenizer.model")
    if os.path.isfile(os.path.join(root, "manifest.json")):
        return prefix, model
    os.makedirs(os.path.dirname(root), exist_ok=True)
    with open(root + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder; the others wait here, then find it built
        if os.path.isfile(os.path.join(root, "manifest.json")):
            return prefix, model
        if os.path.exists(root):
            if os.listdir(root):
                raise FileExistsError(f"demo corpus cache {root} exists but is not a complete demo corpus; "
                                      f"remove it or choose another directory")
            os.rmdir(root)
        tmp = tempfile.mkdtemp(dir=os.path.dirname(root), prefix=f".{os.path.basename(root)}.building-")
        try:
            os.chmod(tmp, 0o755)
            _build(tmp, vocab_size, max_chars)
            os.rename(tmp, root)  # atomic: readers see nothing or the complete corpus
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return prefix, model


def _build(out: str, vocab_size: int, max_chars: int) -> None:
    from megatron_grow.data.preprocess import encode_to_indexed
    from megatron_grow.data.tokenizer import Tokenizer, train_tokenizer

    t0 = time.time()
    docs = list(documents(max_chars))
    with open(os.path.join(out, "demo.jsonl"), "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"text": d}) + "\n")
    text = os.path.join(out, "train.txt")
    with open(text, "w", encoding="utf-8") as f:
        f.write("\n".join(docs))
    model = train_tokenizer([text], os.path.join(out, "demo.tokenizer"), vocab_size)
    os.remove(text)
    stats = encode_to_indexed(docs, Tokenizer(model), os.path.join(out, "demo"))
    manifest = {"version": VERSION, "python": sys.version.split()[0], "vocab_size": vocab_size,
                "max_chars": max_chars, "documents": stats["documents"], "tokens": stats["tokens"],
                "chars": sum(map(len, docs)), "build_seconds": round(time.time() - t0, 1)}
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
