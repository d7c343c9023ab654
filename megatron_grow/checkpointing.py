"""Checkpoints through megatron dist_checkpointing (torch_dist), saved atomically.

Layout of ``--save DIR``::

    DIR/iter_0000100/             one dist checkpoint (model, optimizer, scheduler, RNG, data position)
    DIR/latest_checkpointed_iteration.txt   the iteration to load, replaced atomically

A save writes ``iter_N.tmp`` and renames it to ``iter_N`` only after every rank finished, then
replaces the tracker file. A crash at any point leaves the tracker naming the previous complete
checkpoint. Weights and optimizer moments are ShardedTensors keyed by parameter, so a checkpoint
loads into any TP/PP layout; the RNG states are per rank and restored only in the same layout.
"""

from __future__ import annotations

import os
import shutil
import signal

import torch
import torch.distributed as dist
from megatron.core import dist_checkpointing
from megatron.core.dist_checkpointing.mapping import ShardedObject
from torch.distributed.checkpoint.api import CheckpointException  # (a BaseException, not an Exception)

TRACKER = "latest_checkpointed_iteration.txt"
# checksums.<rank>.json in a checkpoint: size and CRC-32 of each CHUNK bytes of that rank's share of its files
CHUNK = 64 << 20
# Per-layer keys (decoder.layers.<global index>.<param>) instead of tensors stacked over layers:
# a checkpoint then does not depend on the pipeline split, and growing depth is a key rename.
SHARDING_METADATA = {"non_homogeneous_layers": True}


def model_sharded_state_dict(model):
    # a fresh dict each time: megatron stores the current DP group into it in place
    return model.sharded_state_dict(metadata=dict(SHARDING_METADATA))


def iter_dir(root: str, iteration: int) -> str:
    return os.path.join(root, f"iter_{iteration:07d}")


def latest_iteration(root: str) -> int | None:
    path = os.path.join(root, TRACKER)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return int(f.read().strip())


def iterations(root: str) -> list[int]:
    """The iterations of the complete checkpoints under ``root`` (iter_N directories, not .tmp)."""
    if not os.path.isdir(root):
        return []
    return sorted(int(d[5:]) for d in os.listdir(root) if d.startswith("iter_") and d[5:].isdigit())


def prune(root: str, keep: int) -> list[str]:
    """--keep-last-k: remove all but the newest ``keep`` complete checkpoints under ``root`` and any
    ``.tmp`` leftover of an interrupted save (call after a save has committed; the tracker's
    iteration is always kept; ``grow_source`` is another directory and never touched). Returns the
    removed paths."""
    latest = latest_iteration(root)
    its = iterations(root)
    doomed = [iter_dir(root, i) for i in its[:-keep] if i != latest]
    doomed += [os.path.join(root, d) for d in os.listdir(root) if d.startswith("iter_") and d.endswith(".tmp")]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def _rng_state():
    from megatron.core.tensor_parallel import get_cuda_rng_tracker

    state = {"torch": torch.get_rng_state(), "tracker": get_cuda_rng_tracker().get_states()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    rank, world = dist.get_rank(), dist.get_world_size()
    return ShardedObject("rng_state", state, (world,), (rank,), replica_id=0)


def _sharded_state(model, optimizer, scheduler, common: dict, with_rng: bool, is_loading: bool):
    model_sd = model_sharded_state_dict(model)
    clash = set(common) & {"model", "optimizer", "scheduler", "rng_state"}
    assert not clash, f"common checkpoint keys {clash} would shadow sharded state"
    sd = {**common, "model": model_sd, "scheduler": scheduler.state_dict(),
          "optimizer": optimizer.sharded_state_dict(model_sharded_state_dict(model), is_loading)}
    if with_rng:
        sd["rng_state"] = _rng_state()
    return sd


def _writer_queue_dies_with_us() -> None:
    """megatron's torch_dist writer keeps a multiprocessing Manager process (its results queue) for the
    life of the process. Python stops it at a normal exit, but a rank killed with SIGKILL left it
    behind forever (~270 MB each). Start that manager ourselves, with the Linux parent-death signal,
    before megatron starts its own. (Its initializer lives in a module without torch: the spawned
    manager imports it, and importing torch and megatron there cost 5-8 s at every first save.)"""
    import multiprocessing as mp
    from multiprocessing.managers import SyncManager

    from megatron.core.dist_checkpointing.strategies import filesystem_async

    from megatron_grow.lifetime import kill_helper_with_parent

    if filesystem_async._results_queue is None and hasattr(os, "fork") and os.uname().sysname == "Linux":
        manager = SyncManager(ctx=mp.get_context("spawn"))
        manager.start(initializer=kill_helper_with_parent)
        filesystem_async._results_queue = manager.Queue()
        filesystem_async._results_manager = manager  # (kept alive with the module)


def save(root: str, iteration: int, model, optimizer, scheduler, common: dict) -> str:
    """Save a complete checkpoint of ``iteration`` under ``root`` atomically; returns its path."""
    _writer_queue_dies_with_us()
    final, tmp = iter_dir(root, iteration), iter_dir(root, iteration) + ".tmp"
    if dist.get_rank() == 0:
        os.makedirs(root, exist_ok=True)
        if os.path.exists(tmp):  # the leftover of a crashed save of this iteration
            shutil.rmtree(tmp)
        os.makedirs(tmp)
    dist.barrier()
    meta = dict(common, iteration=iteration)
    dist_checkpointing.save(_sharded_state(model, optimizer, scheduler, meta, True, False), tmp)
    dist.barrier()
    if os.environ.get("MEGATRON_GROW_KILL_IN_SAVE") == str(iteration):  # fault injection for the tests
        os.kill(os.getpid(), signal.SIGKILL)
    if dist.get_rank() == 0:
        if os.path.exists(final):
            shutil.rmtree(final)
        os.rename(tmp, final)
        tracker_tmp = os.path.join(root, TRACKER + ".tmp")
        with open(tracker_tmp, "w") as f:
            f.write(str(iteration))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tracker_tmp, os.path.join(root, TRACKER))
    dist.barrier()
    write_checksums(final, background=True)
    return final


def _crc_chunks(path: str) -> list[int]:
    """CRC-32 of each CHUNK of a file, read through mmap (no copy), the chunks in threads (zlib
    releases the GIL)."""
    import mmap
    import zlib
    from concurrent.futures import ThreadPoolExecutor

    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return [0]  # (zlib.crc32(b""))
        n = -(-size // CHUNK)
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            view = memoryview(m)
            try:
                with ThreadPoolExecutor(min(8, n)) as pool:
                    return list(pool.map(lambda k: zlib.crc32(view[k * CHUNK:(k + 1) * CHUNK]), range(n)))
            finally:
                view.release()


_CHECKSUM_THREADS: list = []


def write_checksums(path: str, background: bool = False) -> None:
    """This rank's share of the checkpoint's files (every world-size-th of the sorted listing), their
    sizes and CRC-32s, into ``checksums.<rank>.json`` beside them. No collective: with ``background``
    it runs in a thread, off the save's critical path (the process waits for it before exiting;
    ``wait_for_checksums`` waits now). Needs a file system every rank sees, as torch_dist does."""
    import json
    import threading

    rank, world = dist.get_rank(), dist.get_world_size()

    def run():
        try:
            files = sorted(f for f in os.listdir(path) if os.path.isfile(os.path.join(path, f))
                           and not f.startswith("checksums"))
            mine = {f: {"size": os.path.getsize(os.path.join(path, f)), "crc32": _crc_chunks(os.path.join(path, f))}
                    for f in files[rank::world]}
            out = os.path.join(path, f"checksums.{rank}.json")
            with open(out + ".tmp", "w") as f:
                json.dump(mine, f)
            os.replace(out + ".tmp", out)
        except FileNotFoundError:  # the checkpoint was pruned meanwhile (--keep-last-k)
            pass

    if not background:
        return run()
    t = threading.Thread(target=run, name=f"checksums {path}")
    t.start()
    _CHECKSUM_THREADS.append(t)


def wait_for_checksums() -> None:
    while _CHECKSUM_THREADS:
        _CHECKSUM_THREADS.pop().join()


def verify_checksums(path: str) -> str | None:
    """The first problem with the files of checkpoint ``path`` against its ``checksums.<rank>.json``
    (a missing, truncated or changed file), or None. A checkpoint without checksums passes."""
    import json

    want = {}
    for name in os.listdir(path):
        if name.startswith("checksums.") and name.endswith(".json"):
            with open(os.path.join(path, name)) as f:
                want.update(json.load(f))
    if not want:
        return None
    for name, w in sorted(want.items()):
        p = os.path.join(path, name)
        if not os.path.isfile(p):
            return f"{p} is missing"
        if os.path.getsize(p) != w["size"]:
            return f"{p} has {os.path.getsize(p)} bytes, {w['size']} were saved"
        got = _crc_chunks(p)
        if got != w["crc32"]:
            k = next(i for i, (a, b) in enumerate(zip(got, w["crc32"])) if a != b)
            return f"{p} differs from what was saved (CRC-32 of bytes {k * CHUNK}..{(k + 1) * CHUNK})"
    return None


def read_common(path: str) -> dict:
    """The non-sharded part of a checkpoint (iteration, layout, config, data position, ...)."""
    return dist_checkpointing.load_common_state_dict(path)


def damaged(root: str, it: int, e: Exception) -> SystemExit:
    """The error for a checkpoint that cannot be read: which directory, why, and what to do."""
    have = [i for i in iterations(root) if i != it]
    if isinstance(e, CheckpointException) and e.failures:  # the first rank's own error, not the traceback text
        e = next(iter(e.failures.values()))[0]
    why = f"{type(e).__name__}: {str(e)[:300]}" if str(e) else type(e).__name__
    return SystemExit(f"--load {root}: the checkpoint {iter_dir(root, it)} cannot be read ({why}); it is damaged "
                      f"or incomplete. Load another with --ckpt-step N or add --ckpt-fallback "
                      f"(other complete ones: {', '.join(map(str, have)) or 'none'})")


def read_common_or_exit(root: str, it: int) -> dict:
    try:
        return read_common(iter_dir(root, it))
    except Exception as e:  # a missing or truncated common.pt / metadata
        raise damaged(root, it, e) from None


def load(root: str, model, optimizer, scheduler, iteration: int | None = None, layout: dict | None = None) -> dict:
    """Load the checkpoint of ``iteration`` (default: the latest complete one) in ``root`` into model,
    optimizer and scheduler; the per-rank RNG states too when ``layout`` (RunConfig.layout) is the
    one it was saved at. Returns the checkpoint's common state (iteration, consumed_samples, ...)."""
    iteration = latest_iteration(root) if iteration is None else iteration
    if iteration is None:
        raise SystemExit(f"--load {root}: no {TRACKER} there; it holds no complete checkpoint")
    path = iter_dir(root, iteration)
    common = read_common_or_exit(root, iteration)
    same_layout = layout is not None and common.get("layout") == layout
    sd = _sharded_state(model, optimizer, scheduler, {}, same_layout, True)
    sd.pop("scheduler")
    try:
        state = dist_checkpointing.load(sd, path)
    except (Exception, CheckpointException) as e:  # a truncated shard, a missing .metadata, ...
        raise damaged(root, iteration, e) from None
    model.load_state_dict(state["model"], strict=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(common["scheduler"])
    if same_layout:
        _restore_rng(state["rng_state"])
    return common


def _restore_rng(state):
    from megatron.core.tensor_parallel import get_cuda_rng_tracker

    torch.set_rng_state(state["torch"])
    get_cuda_rng_tracker().set_states(state["tracker"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"])
