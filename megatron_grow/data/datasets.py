"""megatron-core GPTDataset (or MockGPTDataset) splits, and the deterministic micro-batch order.

Notes on megatron-core's dataset API (0.16):

- ``BlendedMegatronDatasetBuilder.build()`` is collective when ``torch.distributed`` is
  initialised: rank 0 builds (and caches) each split's indices, then every rank meets at a
  ``barrier()`` on the default group, then the other ranks load them. So every rank of the world
  must call ``build_datasets`` (and ``is_built_on_rank`` is always true here: each rank reads its
  own data). Without a process group each process builds on its own.
- The indices are cached as ``.npy`` files under ``path_to_cache``, megatron's default being
  ``<data_prefix>/cache/GPTDataset_indices`` (a directory named after the prefix). Its cache key
  does not cover the files' contents, so a corpus regenerated under the same prefix would reuse
  stale indices (an IndexError mid-run): ``build_datasets`` caches under a subdirectory named by
  a fingerprint of the .bin/.idx files (``data_fingerprint``) instead.
- A split that gets no documents but is asked for samples makes GPTDataset loop forever
  (``_get_num_epochs``); ``build_datasets`` refuses such a split first.
- With no data (mock) megatron ignores ``split`` and splits its 100000 mock documents 1:1:1.
"""

from __future__ import annotations

import hashlib
import os
import struct

import numpy
import torch

BATCH_KEYS = ("tokens", "labels", "loss_mask", "position_ids")


class MockTokenizer:
    """What mock data needs of a tokenizer: a vocabulary size and an end-of-document id (the last
    id). No file behind it; ``--mock-data`` works without any tokenizer model."""

    pad = -1

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size
        self.eod = vocab_size - 1
        self.unique_identifiers = {"class": "MockTokenizer", "vocab_size": vocab_size}


def token_range_problems(prefix: str, vocab_size: int, tokenizer: str, sample: int = 1 << 26) -> list[str]:
    """Token ids of PREFIX.bin that the tokenizer (``vocab_size`` tokens) does not have: the data was
    preprocessed with another tokenizer. Reads the whole file up to ``sample`` tokens, else that many
    in 64 windows spread over it."""
    from megatron.core.datasets.indexed_dataset import DType

    with open(prefix + ".idx", "rb") as f:
        dtype = DType.dtype_from_code(f.read(18)[17])
    tokens = numpy.memmap(prefix + ".bin", mode="r", dtype=dtype)
    n, w = len(tokens), sample // 64
    parts = [tokens] if n <= sample else [tokens[i:i + w] for i in numpy.linspace(0, n - w, 64).astype(numpy.int64)]
    over = sum(int(numpy.count_nonzero(p >= vocab_size)) for p in parts)
    if not over:
        return []
    checked = sum(len(p) for p in parts)
    top = max(int(p.max()) for p in parts)
    return [f"--data-path {prefix}: {prefix}.bin holds token ids up to {top} ({over / checked:.1%} of the {checked:,} "
            f"tokens checked are >= {vocab_size}), but --tokenizer-model {tokenizer} has {vocab_size} tokens: the data "
            f"was preprocessed with another tokenizer. Pass the one it was made with, or preprocess it again "
            f"(tools/preprocess_data.py --tokenizer-model {tokenizer})"]


def data_file_problems(prefix: str) -> list[str]:
    """Problems of PREFIX.bin/.idx, each naming the file: a damaged or truncated index, or a .bin
    whose size is not the one its index describes (checked at startup, before any work)."""
    from megatron.core.datasets.indexed_dataset import _INDEX_HEADER, DType

    idx, bin_ = prefix + ".idx", prefix + ".bin"
    fix = "; regenerate both with tools/preprocess_data.py"
    size = os.path.getsize(idx)
    with open(idx, "rb") as f:
        head = f.read(34)
    if len(head) < 34 or head[:9] != _INDEX_HEADER or struct.unpack("<Q", head[9:17])[0] != 1:
        return [f"--data-path {prefix}: {idx} is not a megatron index (bad header, or truncated to {size} bytes){fix}"]
    try:
        itemsize = numpy.dtype(DType.dtype_from_code(head[17])).itemsize
    except (KeyError, ValueError):
        return [f"--data-path {prefix}: {idx} names an unknown token dtype (code {head[17]}){fix}"]
    seqs, docs = struct.unpack("<QQ", head[18:34])
    want = 34 + 12 * seqs + 8 * docs
    if size != want:
        return [f"--data-path {prefix}: {idx} has {size} bytes but its header describes {want} (truncated or "
                f"damaged){fix}"]
    if seqs == 0:
        return [f"--data-path {prefix}: {idx} holds no documents{fix}"]
    mm = numpy.memmap(idx, mode="r", dtype=numpy.uint8)
    last_len = int(mm[34 + 4 * (seqs - 1):34 + 4 * seqs].view(numpy.int32)[0])
    last_ptr = int(mm[34 + 4 * seqs + 8 * (seqs - 1):34 + 12 * seqs].view(numpy.int64)[0])
    want_bin = last_ptr + last_len * itemsize
    if os.path.getsize(bin_) != want_bin:
        return [f"--data-path {prefix}: {bin_} has {os.path.getsize(bin_)} bytes but {idx} describes {want_bin} "
                f"(truncated, or the two files come from different preprocessing runs){fix}"]
    return []


def data_fingerprint(prefix: str) -> str:
    """Identifies the contents of PREFIX.bin/.idx: their sizes and the first and last MiB of the index
    (the document lengths: a regenerated corpus changes them). The same on every node's copy."""
    h = hashlib.sha1()
    for path in (prefix + ".bin", prefix + ".idx"):
        h.update(str(os.path.getsize(path)).encode())
    with open(prefix + ".idx", "rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, os.path.getsize(prefix + ".idx") - (1 << 20)))
        h.update(f.read())
    return h.hexdigest()[:16]


def _check_split_documents(data_prefix: str, split: str, num_samples) -> None:
    """Refuse a split that would get no documents but is asked for samples (megatron hangs)."""
    from megatron.core.datasets.blended_megatron_dataset_config import (
        convert_split_vector_to_split_matrix,
        parse_and_normalize_split,
    )
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    n_docs = IndexedDataset(data_prefix).sequence_lengths.shape[0]
    matrix = convert_split_vector_to_split_matrix(parse_and_normalize_split(split))
    for name, bookends, n in zip(("train", "valid", "test"), matrix, num_samples, strict=True):
        if bookends is None or n == 0:
            continue
        beg, end = (int(round(b * float(n_docs))) for b in bookends)
        if end <= beg:
            raise ValueError(f"--split {split}: the {name} split gets none of the {n_docs} documents of "
                             f"{data_prefix}; give it a larger share or use more documents")


def build_datasets(data_prefix: str | None, tokenizer, seq_length: int, seed: int, split: str, num_samples,
                   mock: bool = False, vocab_size: int | None = None, path_to_cache: str | None = None):
    """Return ``(train, valid, test)`` megatron-core datasets (None for a split with no share).

    Documents are split by ``split`` (e.g. "98,2,0", in document order), so the valid split is held
    out from training. Each split is a ``GPTDataset`` of at least ``num_samples[i]`` samples (more
    epochs when needed, shuffled with ``seed``); a sample is ``seq_length + 1`` consecutive tokens,
    given as ``tokens``/``labels`` of ``seq_length`` each (labels shifted by one), ``loss_mask``
    ones (EOD tokens are trained on), ``position_ids`` 0..seq_length-1 (no resets at EOD). With ``mock`` the data is
    megatron's ``MockGPTDataset``; ``tokenizer`` may then be None, given ``vocab_size``.

    Call on every rank when torch.distributed is initialised (see the module notes)."""
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig, MockGPTDataset
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    if mock:
        if tokenizer is None:
            if vocab_size is None:
                raise ValueError("mock data needs vocab_size (or a tokenizer)")
            tokenizer = MockTokenizer(vocab_size)
    else:
        if not data_prefix or not IndexedDataset.exists(data_prefix):
            raise FileNotFoundError(f"--data-path {data_prefix}: no {data_prefix}.bin/.idx "
                                    f"(make them with tools/preprocess_data.py)")
        if tokenizer is None:
            raise ValueError("build_datasets needs the tokenizer the data was preprocessed with")
        _check_split_documents(data_prefix, split, num_samples)
        # a cache per corpus contents, never another corpus's indices under the same prefix
        path_to_cache = os.path.join(path_to_cache or os.path.join(data_prefix, "cache"),
                                     f"GPTDataset_indices-{data_fingerprint(data_prefix)}")
    config = GPTDatasetConfig(
        random_seed=seed, sequence_length=seq_length, blend=None if mock else ([data_prefix], None),
        split=split, path_to_cache=path_to_cache, tokenizer=tokenizer,
        reset_position_ids=False, reset_attention_mask=False, eod_mask_loss=False,
        create_attention_mask=False,
    )
    cls = MockGPTDataset if mock else GPTDataset
    train, valid, test = BlendedMegatronDatasetBuilder(cls, list(num_samples), lambda: True, config).build()
    return train, valid, test


def micro_batches(dataset, consumed_samples: int, micro_batch_size: int, data_parallel_rank: int,
                  data_parallel_size: int):
    """Yield this DP rank's micro-batches, in order, from global sample ``consumed_samples`` on.

    Layout (Megatron's ``MegatronPretrainingSampler``): the sample stream
    ``consumed_samples, consumed_samples + 1, ...`` is cut into chunks of
    ``micro_batch_size * data_parallel_size``; DP rank r takes samples
    ``[r * micro_batch_size, (r + 1) * micro_batch_size)`` of each chunk. So the k-th micro-batch
    of rank r holds samples ``consumed_samples + (k * dp + r) * mbs + [0, mbs)``, and a global
    batch of G = mbs * dp * num_micro samples is always samples ``[c, c + G)``: DP1 with two
    micro-batches and DP2 with one each train on the same samples per step.

    Each item is a dict of CPU tensors of shape [micro_batch_size, seq_length]: ``tokens``,
    ``labels``, ``position_ids`` (int64) and ``loss_mask`` (float32). Raises IndexError once the
    dataset is exhausted (size it with num_samples = train_iters * global_batch_size)."""
    if dataset is None:
        raise ValueError("this split has no samples; give it a share in --split")
    if not 0 <= data_parallel_rank < data_parallel_size:
        raise ValueError(f"data_parallel_rank {data_parallel_rank} not in [0, {data_parallel_size})")
    start = consumed_samples + data_parallel_rank * micro_batch_size
    step = micro_batch_size * data_parallel_size
    while True:
        if start + micro_batch_size > len(dataset):
            raise IndexError(f"dataset exhausted: micro-batch at sample {start} needs {micro_batch_size} "
                             f"more of its {len(dataset)} samples; build it with more num_samples")
        samples = [dataset[i] for i in range(start, start + micro_batch_size)]
        batch = {k: torch.stack([torch.as_tensor(s[k]) for s in samples]) for k in BATCH_KEYS}
        for k in ("tokens", "labels", "position_ids"):
            batch[k] = batch[k].long()
        batch["loss_mask"] = batch["loss_mask"].float()
        yield batch
        start += step
