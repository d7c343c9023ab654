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
- A split that gets no documents makes GPTDataset loop forever (``_get_num_epochs``), even when asked
  for 0 samples: ``build_datasets`` refuses such a split when it is asked for samples, and does not
  build it when not (the unused test part of --split).
- With no data (mock) megatron ignores ``split`` and splits its 100000 mock documents 1:1:1.
- Blends (several prefixes) are megatron's ``BlendedDataset``, which asks ``torch.distributed`` for
  the rank when it caches: build them in an initialised process group (the trainer always is).
  Several prefixes without weights make megatron cap the split at one pass over them (its weights:
  the prefixes' sample counts); ``build_datasets`` passes the token counts as weights instead, so
  a run longer than the data repeats it in the same proportions.
- An ``IndexedDataset`` unmaps its index when collected: a view of ``sequence_lengths`` kept past
  the dataset crashes the process (segmentation fault); ``index_counts`` reads the header instead.
"""

from __future__ import annotations

import atexit
import hashlib
import math
import os
import re
import struct
import weakref

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


def token_range_problems(prefix: str, vocab_size: int, tokenizer: str, sample: int = 1 << 26,
                         flag: str = "--data-path") -> list[str]:
    """Token ids of PREFIX.bin that the tokenizer (``vocab_size`` tokens) does not have: the data was
    preprocessed with another tokenizer (``tokenizer``: the flags that name it, e.g. "--tokenizer-model X").
    Reads the whole file up to ``sample`` tokens, else that many
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
    return [f"{flag} {prefix}: {prefix}.bin holds token ids up to {top} ({over / checked:.1%} of the {checked:,} "
            f"tokens checked are >= {vocab_size}), but {tokenizer} has {vocab_size} tokens: the data "
            f"was preprocessed with another tokenizer. Pass the one it was made with, or preprocess it again "
            f"(tools/preprocess_data.py {tokenizer})"]


def data_file_problems(prefix: str, flag: str = "--data-path") -> list[str]:
    """Problems of PREFIX.bin/.idx, each naming the file: a damaged or truncated index, or a .bin
    whose size is not the one its index describes (checked at startup, before any work)."""
    from megatron.core.datasets.indexed_dataset import _INDEX_HEADER, DType

    idx, bin_ = prefix + ".idx", prefix + ".bin"
    fix = "; regenerate both with tools/preprocess_data.py"
    size = os.path.getsize(idx)
    with open(idx, "rb") as f:
        head = f.read(34)
    if len(head) < 34 or head[:9] != _INDEX_HEADER or struct.unpack("<Q", head[9:17])[0] != 1:
        return [f"{flag} {prefix}: {idx} is not a megatron index (bad header, or truncated to {size} bytes){fix}"]
    try:
        itemsize = numpy.dtype(DType.dtype_from_code(head[17])).itemsize
    except (KeyError, ValueError):
        return [f"{flag} {prefix}: {idx} names an unknown token dtype (code {head[17]}){fix}"]
    seqs, docs = struct.unpack("<QQ", head[18:34])
    want = 34 + 12 * seqs + 8 * docs
    if size != want:
        return [f"{flag} {prefix}: {idx} has {size} bytes but its header describes {want} (truncated or "
                f"damaged){fix}"]
    if seqs == 0:
        return [f"{flag} {prefix}: {idx} holds no documents{fix}"]
    mm = numpy.memmap(idx, mode="r", dtype=numpy.uint8)
    last_len = int(mm[34 + 4 * (seqs - 1):34 + 4 * seqs].view(numpy.int32)[0])
    last_ptr = int(mm[34 + 4 * seqs + 8 * (seqs - 1):34 + 12 * seqs].view(numpy.int64)[0])
    want_bin = last_ptr + last_len * itemsize
    if os.path.getsize(bin_) != want_bin:
        return [f"{flag} {prefix}: {bin_} has {os.path.getsize(bin_)} bytes but {idx} describes {want_bin} "
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


DEFAULT_SPLIT = "98,2,0"  # --split with --data-path when none is given
SPLITS = ("train", "valid", "test")
DATA_FLAGS = ("data_path", "train_data_path", "valid_data_path", "test_data_path")  # the RunConfig fields


def flag_of(field: str) -> str:
    return "--" + field.replace("_", "-")


def parse_blend(words, flag: str = "--data-path") -> tuple[list[str], list[float] | None]:
    """Megatron-LM's forms of a data flag -> ``(prefixes, weights)``: one prefix, several prefixes
    (weights None: in proportion to their sizes) or weight-prefix pairs (``0.3 web 0.7 code``). A
    single prefix's weight is dropped (it gets every sample). ValueError naming ``flag`` otherwise."""
    words = [words] if isinstance(words, str) else [str(w) for w in words]
    if not words:
        raise ValueError(f"{flag}: no prefix given")

    def number(w):
        try:
            return float(w)
        except ValueError:
            return None

    nums = [number(w) for w in words]
    if all(n is None for n in nums):
        return words, None
    given = " ".join(words)
    if len(words) % 2 or any(n is None for n in nums[::2]) or any(n is not None for n in nums[1::2]):
        raise ValueError(f"{flag} {given}: give prefixes, or pairs of a weight and a prefix (0.3 web 0.7 code), "
                         f"not a mix")
    weights, prefixes = nums[::2], words[1::2]
    bad = [w for w in weights if not (math.isfinite(w) and w > 0)]
    if bad:
        raise ValueError(f"{flag} {given}: weight {bad[0]:g} must be a finite number > 0 (leave a prefix out "
                         f"instead of weighting it 0)")
    return prefixes, None if len(prefixes) == 1 else weights


def data_source(cfg):
    """What ``build_datasets`` reads for a config: the --data-path list, or the per-split flags as
    {"train": list, "valid": list, "test": list or None}."""
    if cfg.data_path:
        return cfg.data_path
    return {name: getattr(cfg, f"{name}_data_path") for name in SPLITS}


def data_sources(cfg) -> dict[str, tuple[list[str], list[float] | None]]:
    """Each data flag given (RunConfig field -> its parsed blend), in DATA_FLAGS order; ValueError
    naming the flag that does not parse."""
    return {f: parse_blend(getattr(cfg, f), flag_of(f)) for f in DATA_FLAGS if getattr(cfg, f)}


def data_path_problems(cfg, tokenizer=None) -> list[str]:
    """The data flags' problems (not --mock-data's), each naming its flag: their forms and combination,
    and every prefix's files: missing, damaged, too few documents for a part of --split, and with
    ``tokenizer`` (the built one) token ids it does not have."""
    from megatron.core.datasets.blended_megatron_dataset_config import (
        convert_split_vector_to_split_matrix,
        parse_and_normalize_split,
    )

    P = []
    per_split = [flag_of(f) for f in DATA_FLAGS[1:] if getattr(cfg, f)]
    if cfg.data_path and per_split:
        P.append(f"--data-path with {' / '.join(per_split)}: give one data source, --data-path (divided by --split) "
                 f"or --train-data-path with --valid-data-path, not both")
    elif per_split:
        if not cfg.train_data_path:
            P.append(f"{' / '.join(per_split)} without --train-data-path: give the training data too")
        if not cfg.valid_data_path:
            P.append("--train-data-path needs --valid-data-path (the held-out data the loss is evaluated on every "
                     "--eval-interval iterations)")
        if cfg.split:
            P.append(f"--split {cfg.split} does not apply with --train-data-path / --valid-data-path (each split reads "
                     f"its own files whole); leave --split out")
    try:
        shares = convert_split_vector_to_split_matrix(parse_and_normalize_split(cfg.split or DEFAULT_SPLIT))
    except (AssertionError, ValueError, ZeroDivisionError):
        shares = None  # (data_problems names a bad --split)
    seen = set()
    for f in DATA_FLAGS:
        try:
            prefixes = parse_blend(getattr(cfg, f), flag_of(f))[0] if getattr(cfg, f) else []
        except ValueError as e:
            P.append(str(e))
            continue
        for prefix in prefixes:
            if prefix in seen or prefix == "demo":  # (demo: resolve_data_flags makes it the bundled corpus)
                continue
            seen.add(prefix)
            missing = [prefix + e for e in (".bin", ".idx") if not os.path.isfile(prefix + e)]
            P += [f"{flag_of(f)} {prefix}: file {path} not found; create it with tools/preprocess_data.py"
                  for path in missing]
            if missing:
                continue
            found = data_file_problems(prefix, flag_of(f))
            if not found and tokenizer is not None and cfg.vocab_size:
                found = token_range_problems(prefix, cfg.vocab_size, tokenizer.flags, flag=flag_of(f))
            if not found and f == "data_path" and shares:
                for ends, name in zip(shares[:2], SPLITS, strict=False):  # (the test part is not read)
                    try:
                        _split_docs(prefix, ends or (0.0, 0.0), name, f"--split {cfg.split or DEFAULT_SPLIT}")
                    except ValueError as e:
                        found.append(str(e))
            P += found
    return P


_FINGERPRINTS: dict = {}


def _fingerprint_now(prefix: str) -> str | None:
    """data_fingerprint of PREFIX, remembered while its files keep their size and time (saves call
    this at every checkpoint); None when the files are not there."""
    try:
        key = (os.path.abspath(prefix),) + tuple((os.stat(prefix + e).st_size, os.stat(prefix + e).st_mtime_ns)
                                                 for e in (".bin", ".idx"))
    except OSError:
        return None
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = data_fingerprint(prefix)
    return _FINGERPRINTS[key]


def data_blend(cfg) -> dict:
    """What a run reads, as its checkpoints record it (common state "data_blend") and a resume compares:
    per data flag, each prefix as [absolute path, normalised weight (None: by size), fingerprint of its
    files], and --split with --data-path; {"mock": True} for --mock-data."""
    if cfg.mock_data:
        return {"mock": True}
    out = {}
    for f, (prefixes, weights) in data_sources(cfg).items():
        ws = [w / sum(weights) for w in weights] if weights else [None] * len(prefixes)
        out[f] = [[os.path.abspath(p), w, _fingerprint_now(p)] for p, w in zip(prefixes, ws, strict=True)]
    if cfg.data_path:
        out["split"] = ",".join(re.findall(r"[.0-9]+", cfg.split or DEFAULT_SPLIT))  # (as megatron reads it)
    return out


def describe_blend(record: dict) -> str:
    """A data_blend record as the flags that give it."""
    if record.get("mock"):
        return "--mock-data"
    parts = []
    for f in DATA_FLAGS:
        if record.get(f):
            parts.append(flag_of(f) + " " + " ".join(p if w is None else f"{w:.4g} {p}" for p, w, _ in record[f]))
    if record.get("split"):
        parts.append(f"--split {record['split']}")
    return " ".join(parts) or "no data flags"


def blend_change(old: dict | None, new: dict) -> str | None:
    """None when ``new`` reads the data of ``old`` (a checkpoint's data_blend) in the same proportions
    and order (a prefix that moved but holds the same files is the same); else what changed. A
    record without data flags (an older checkpoint, an imported model) compares equal to any."""
    if not old or not any(k in old for k in (*DATA_FLAGS, "mock")):
        return None

    def same(a, b):
        weight = (a[1] is None) == (b[1] is None) and (a[1] is None or math.isclose(a[1], b[1], rel_tol=1e-9))
        return weight and (a[2] == b[2] if a[2] and b[2] else a[0] == b[0])

    def same_flag(a, b):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))

    if (old.get("mock", False) == new.get("mock", False) and old.get("split") == new.get("split")
            and all(same_flag(old.get(f) or [], new.get(f) or []) for f in DATA_FLAGS)):
        return None
    changed = sorted({a[0] for f in DATA_FLAGS for a in old.get(f) or [] for b in new.get(f) or []
                      if a[0] == b[0] and a[2] and b[2] and a[2] != b[2]})
    return (f"{describe_blend(old)}; this run gives {describe_blend(new)}"
            + (f" (the files of {', '.join(changed)} changed since)" if changed else ""))


def index_counts(prefix: str) -> tuple[int, int]:
    """(documents, tokens) of PREFIX.bin/.idx, from the index header and the .bin size (no arrays read:
    megatron's IndexedDataset unmaps its arrays when collected, a view kept of them crashes)."""
    from megatron.core.datasets.indexed_dataset import DType

    with open(prefix + ".idx", "rb") as f:
        head = f.read(34)
    itemsize = numpy.dtype(DType.dtype_from_code(head[17])).itemsize
    return struct.unpack("<Q", head[18:26])[0], os.path.getsize(prefix + ".bin") // itemsize


def _split_docs(prefix: str, bookends, name: str, flag: str) -> None:
    """Refuse a part of PREFIX's documents (megatron's split by ``bookends``) that gets no document
    (megatron would loop forever)."""
    n = index_counts(prefix)[0]
    beg, end = (int(round(b * float(n))) for b in bookends)
    if end <= beg:
        raise ValueError(f"{flag}: the {name} split gets none of the {n} documents of {prefix}; give it "
                         f"a larger share or use more documents")


def build_datasets(data, tokenizer, seq_length: int, seed: int, split: str | None, num_samples,
                   mock: bool = False, vocab_size: int | None = None, path_to_cache: str | None = None,
                   mmap_bin_files: bool = True):
    """Return ``(train, valid, test)`` megatron-core datasets (None for a split with no share).

    ``data``: one .bin/.idx prefix, or a --data-path list in Megatron-LM's forms (``parse_blend``),
    every prefix's documents divided by ``split`` (e.g. "98,2,0", in document order, default
    DEFAULT_SPLIT), so the valid split is held out from training; or a dict {"train": list, "valid":
    list, "test": list or None} of per-split lists, each read whole (``split`` must then be None).
    Several prefixes are blended by megatron-core's BlendedDataset: sample ``i`` comes from prefix
    ``k`` in the proportion of its weight; without weights, of its tokens. Each split has at least
    ``num_samples[i]`` samples (more epochs of a prefix when needed, shuffled with ``seed``); a sample
    is ``seq_length + 1`` consecutive tokens of one prefix, given as ``tokens``/``labels`` of
    ``seq_length`` each (labels shifted by one), ``loss_mask`` ones (EOD tokens are trained on),
    ``position_ids`` 0..seq_length-1 (no resets at EOD). With ``mock`` the data is megatron's
    ``MockGPTDataset``; ``tokenizer`` may then be None, given ``vocab_size``.

    Call on every rank when torch.distributed is initialised (see the module notes)."""
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.blended_megatron_dataset_config import (
        convert_split_vector_to_split_matrix,
        parse_and_normalize_split,
    )
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig, MockGPTDataset
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    blend = per_split = None
    if mock:
        if tokenizer is None:
            if vocab_size is None:
                raise ValueError("mock data needs vocab_size (or a tokenizer)")
            tokenizer = MockTokenizer(vocab_size)
    else:
        if isinstance(data, dict):
            if split:
                raise ValueError(f"--split {split} does not apply with --train-data-path / --valid-data-path / "
                                 f"--test-data-path (each split reads its own files); leave it out")
            if num_samples[2] == 0:  # (no test samples asked: the test files are not indexed)
                data = dict(data, test=None)
            parts = [(parse_blend(data[n], flag_of(f"{n}_data_path")), [(0.0, 1.0)], [n], f"--{n}-data-path")
                     if data.get(n) else None for n in SPLITS]
        else:
            split = split or DEFAULT_SPLIT
            matrix = convert_split_vector_to_split_matrix(parse_and_normalize_split(split))
            blend = parse_blend(data)
            parts = [(blend, matrix, list(SPLITS), "--split " + split)]
        for part in (p for p in parts if p):
            for prefix in part[0][0]:
                if not IndexedDataset.exists(prefix):
                    raise FileNotFoundError(f"{part[3]}: no {prefix}.bin/.idx (make them with "
                                            f"tools/preprocess_data.py)")
        if tokenizer is None:
            raise ValueError("build_datasets needs the tokenizer the data was preprocessed with")
        resolved = []
        for part in parts:
            if part is None:
                resolved.append(None)
                continue
            (prefixes, weights), bookends, names, flag = part
            for ends, name in zip(bookends, names, strict=True):
                if ends is not None and num_samples[SPLITS.index(name)]:
                    for prefix in prefixes:
                        _split_docs(prefix, ends, name, flag)  # (refuses a split without documents)
            if weights is None and len(prefixes) > 1:  # by size, as Megatron-LM, but past one epoch
                weights = [float(index_counts(p)[1]) for p in prefixes]
            resolved.append((prefixes, weights))
        if isinstance(data, dict):
            per_split = resolved
        else:
            blend = resolved[0]
        every = list(dict.fromkeys(p for r in resolved if r for p in r[0]))
        # a cache per contents of the files, never another corpus's indices under the same prefix
        key = (data_fingerprint(every[0]) if len(every) == 1 else
               hashlib.sha1(" ".join(data_fingerprint(p) for p in every).encode()).hexdigest()[:16])
        path_to_cache = os.path.join(path_to_cache or os.path.join(every[0], "cache"), f"GPTDataset_indices-{key}")
    config = GPTDatasetConfig(
        random_seed=seed, sequence_length=seq_length, blend=blend, blend_per_split=per_split,
        split=None if per_split else split or DEFAULT_SPLIT, path_to_cache=path_to_cache, tokenizer=tokenizer,
        reset_position_ids=False, reset_attention_mask=False, eod_mask_loss=False,
        create_attention_mask=False, mmap_bin_files=mmap_bin_files,
    )
    cls = MockGPTDataset if mock else GPTDataset
    if not mock and not per_split:  # a part of --split asked for no samples is not built: megatron loops forever
        # building a split of 0 documents (the test part of 949,50,1 on 200 documents), even for 0 samples
        config.split_matrix = [ends if n else None for ends, n in zip(config.split_matrix, num_samples, strict=True)]
    train, valid, test = BlendedMegatronDatasetBuilder(cls, list(num_samples), lambda: True, config).build()
    return train, valid, test


def collate(samples) -> dict:
    """Samples (dicts of ``tokens``, ``labels``, ``loss_mask``, ``position_ids``) -> one micro-batch."""
    batch = {k: torch.stack([torch.as_tensor(s[k]) for s in samples]) for k in BATCH_KEYS}
    for k in ("tokens", "labels", "position_ids"):
        batch[k] = batch[k].long()
    batch["loss_mask"] = batch["loss_mask"].float()
    return batch


class MicroBatchIndices:
    """The sample indices of one DP rank's micro-batches, in order (``micro_batches``), as long as the
    dataset has them; ``end`` is then the start of the first micro-batch it lacks."""

    def __init__(self, start: int, step: int, size: int, n: int):
        self.start, self.step, self.size, self.n, self.end = start, step, size, n, None

    def __iter__(self):
        s = self.start
        while s + self.size <= self.n:
            yield list(range(s, s + self.size))
            s += self.step
        self.end = s


def _worker_init(_worker_id: int) -> None:
    """A data worker lives as long as the trainer and ignores the signals that ask it to save and stop
    (Slurm signals every process: the trainer still reads batches until it has saved)."""
    from megatron_grow.lifetime import kill_helper_with_parent

    kill_helper_with_parent()


_LOADERS = weakref.WeakSet()  # the data loaders' iterators with workers alive


def _stop_workers() -> None:
    """At exit, before multiprocessing's own exit hook (which terminates daemonic children with the
    SIGTERM our workers ignore, then waits for them): end every live loader's workers the way a loader
    ends them when it is collected."""
    for it in list(_LOADERS):
        it._shutdown_workers()


def micro_batches(dataset, consumed_samples: int, micro_batch_size: int, data_parallel_rank: int,
                  data_parallel_size: int, num_workers: int = 0):
    """Yield this DP rank's micro-batches, in order, from global sample ``consumed_samples`` on.

    Layout (Megatron's ``MegatronPretrainingSampler``): the sample stream
    ``consumed_samples, consumed_samples + 1, ...`` is cut into chunks of
    ``micro_batch_size * data_parallel_size``; DP rank r takes samples
    ``[r * micro_batch_size, (r + 1) * micro_batch_size)`` of each chunk. So the k-th micro-batch
    of rank r holds samples ``consumed_samples + (k * dp + r) * mbs + [0, mbs)``, and a global
    batch of G = mbs * dp * num_micro samples is always samples ``[c, c + G)``: DP1 with two
    micro-batches and DP2 with one each train on the same samples per step.

    ``num_workers`` > 0 reads them ahead in that many processes (a torch DataLoader over the same
    indices, forked: the same batches). Each item is a dict of CPU tensors of shape
    [micro_batch_size, seq_length]: ``tokens``, ``labels``, ``position_ids`` (int64) and
    ``loss_mask`` (float32). Raises IndexError once the dataset is exhausted (size it with
    num_samples = train_iters * global_batch_size)."""
    if dataset is None:
        raise ValueError("this split has no samples; give it a share in --split (or give --valid-data-path)")
    if not 0 <= data_parallel_rank < data_parallel_size:
        raise ValueError(f"data_parallel_rank {data_parallel_rank} not in [0, {data_parallel_size})")
    indices = MicroBatchIndices(consumed_samples + data_parallel_rank * micro_batch_size,
                                micro_batch_size * data_parallel_size, micro_batch_size, len(dataset))
    if num_workers:
        loader = iter(torch.utils.data.DataLoader(dataset, batch_sampler=indices, num_workers=num_workers,
                                                  collate_fn=collate, worker_init_fn=_worker_init,
                                                  multiprocessing_context="fork"))
        if not _LOADERS:
            atexit.unregister(_stop_workers)
            atexit.register(_stop_workers)  # (after multiprocessing's hook was registered: it runs first)
        _LOADERS.add(loader)
        yield from loader
    else:
        for idx in indices:
            yield collate([dataset[i] for i in idx])
    raise IndexError(f"dataset exhausted: micro-batch at sample {indices.end} needs {micro_batch_size} more of its "
                     f"{len(dataset)} samples; build it with more num_samples")
