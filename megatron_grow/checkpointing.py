"""Checkpoints through megatron dist_checkpointing (torch_dist), saved atomically.

Layout of ``--save DIR``::

    DIR/iter_0000100/             one dist checkpoint (model, optimizer, scheduler, RNG, data position)
    DIR/latest_checkpointed_iteration.txt   the iteration to load, replaced atomically
    DIR/.writer.lock              the job writing into DIR (one at a time: claim_save_dir)

A save writes ``iter_N.tmp`` and renames it to ``iter_N`` only after every rank finished, then
replaces the tracker file. A crash at any point leaves the tracker naming the previous complete
checkpoint. Weights and optimizer moments are ShardedTensors keyed by parameter, so a checkpoint
loads into any TP/PP layout; the RNG states are per rank and restored only in the same layout.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import os
import shutil
import signal
import socket
import sys
import time
import zlib

import torch
import torch.distributed as dist
import xxhash
from megatron.core import dist_checkpointing
from megatron.core.dist_checkpointing.mapping import ShardedObject, ShardedTensor, ShardedTensorFactory
from torch.distributed.checkpoint.api import CheckpointException  # (a BaseException, not an Exception)

from megatron_grow import config
from megatron_grow.config import ConfigError, RunConfig

TRACKER = "latest_checkpointed_iteration.txt"


class CheckpointError(Exception):
    """A checkpoint cannot be used as asked; the message names the directory or file, or the flag,
    and what to do. (The entry points print it and exit 1.)"""


def no_checkpoint(root: str) -> CheckpointError:
    have = iterations(root)
    if have:  # (the tracker was deleted or lost: the checkpoints are there)
        return CheckpointError(f"--load {root}: no {TRACKER} there, but it holds checkpoints of iterations "
                               f"{_listed(have)}; pick one with --ckpt-step N (the newest: --ckpt-step {have[-1]})")
    return CheckpointError(f"--load {root}: no {TRACKER} there, so no complete checkpoint: not a megatron_grow "
                           "checkpoint directory, or no save into it has finished")


def no_such_step(root: str, step: int) -> CheckpointError:
    """--ckpt-step names no complete checkpoint of ``root`` (for the tools that take it)."""
    return CheckpointError(f"--ckpt-step {step}: no complete checkpoint of that iteration in {root} (complete ones: "
                           f"{_listed(iterations(root))})")


# checksums.<rank>.json in a checkpoint: size and a digest of each CHUNK bytes of that rank's share of its
# files. XXH3-64 hashes ~10 GB/s per core here, CRC-32 ~2-3 GB/s (benchmarks/checkpoint_checksums.py).
CHUNK = 64 << 20
HASH = "xxh3_64"
HASHES = {"xxh3_64": xxhash.xxh3_64_intdigest, "crc32": zlib.crc32}
# Per-layer keys (decoder.layers.<global index>.<param>) instead of tensors stacked over layers:
# a checkpoint then does not depend on the pipeline split, and growing depth is a key rename.
SHARDING_METADATA = {"non_homogeneous_layers": True}


LOCK = ".writer.lock"


def checkpoint_problems(cfg: RunConfig) -> list[str]:
    """--save / --load and their options, as far as the flags and the directories tell."""
    P = []
    if cfg.save_interval is not None and not cfg.save:
        P.append("--save-interval needs --save DIR")
    if cfg.save and _holds_checkpoint(cfg.save) and (
            not cfg.load or os.path.abspath(cfg.load) != os.path.abspath(cfg.save)):
        P.append(f"--save {cfg.save} already holds a checkpoint; pass --load {cfg.save} to resume it, "
                 f"or choose an empty --save directory (nothing there is overwritten)")
    if cfg.save:
        P += _save_dir_problems(cfg.save)
    if cfg.load and not os.path.isdir(cfg.load):
        P.append(f"--load {cfg.load}: directory not found")
    if cfg.ckpt_fallback and (not cfg.load or cfg.ckpt_step is not None):
        P.append("--ckpt-fallback picks the newest intact checkpoint of --load DIR: give --load, and not --ckpt-step")
    if cfg.ckpt_step is not None and (not cfg.load or cfg.ckpt_step < 0):
        P.append(f"--ckpt-step {cfg.ckpt_step} picks an iteration of --load DIR: give --load and an iteration >= 0")
    return P


def _holds_checkpoint(root: str) -> bool:
    """A tracker or a complete iter_N directory (the tracker alone is not enough: it can be lost)."""
    return os.path.isdir(root) and (TRACKER in os.listdir(root) or bool(iterations(root)))


def _save_dir_problems(save: str) -> list[str]:
    """--save must be a directory this process can create and write (checked now, not at the first
    save after the work is done)."""
    if os.path.exists(save) and not os.path.isdir(save):
        return [f"--save {save} is a file, not a directory"]
    probe = os.path.abspath(save)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        return [f"--save {save} cannot be created: {probe} is a file"]
    if not os.access(probe, os.W_OK | os.X_OK):
        return [f"--save {save}: {probe} is not writable by this user; choose a writable directory"]
    return []


def claim_save_dir(root: str) -> None:
    """Make this job the one writer of --save ``root`` (rank 0 takes the lock, every rank hears the
    answer): two jobs saving into one directory corrupt each other's checkpoints. The lock names its
    job; one left by a job that is gone (same host, process ended; or this Slurm job, requeued) is taken
    over. Released when the process exits. Raises ConfigError naming the other job."""
    box = [_claim(root) if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    if box[0]:
        raise ConfigError([box[0]])


def _claim(root: str) -> str | None:
    """Rank 0's side of claim_save_dir: None when claimed, else why not."""
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, LOCK)
    me = {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job": os.environ.get("SLURM_JOB_ID"),
          "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            other = _read_lock(path)
            if other is not None and (other.get("host"), other.get("pid")) == (me["host"], me["pid"]):
                return None  # this process's own (a second run inside one process)
            if other is not None and not _gone(other, me):
                who = (f"{other.get('host')} pid {other.get('pid')}"
                       + (f", Slurm job {other['slurm_job']}" if other.get("slurm_job") else "")
                       + f", since {other.get('since')}")
                return (f"--save {root} is being written by another job ({who}): two jobs saving into one directory "
                        f"corrupt each other's checkpoints. Choose another --save directory, or, if that job is "
                        f"gone, remove {path}")
            if other is None and time.time() - os.path.getmtime(path) < 60:  # (being written this moment)
                time.sleep(1)
                continue
            os.remove(path)  # left by a job that is gone
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        atexit.register(_release, path, me)
        return None
    return f"--save {root}: could not take {path} (another job is taking it at the same moment); try again"


def _read_lock(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _gone(other: dict, me: dict) -> bool:
    """Whether the job that wrote a lock has ended: this Slurm job requeued, or a process of this host
    that no longer runs."""
    if other.get("slurm_job") and other["slurm_job"] == me["slurm_job"]:
        return True
    if other.get("host") != me["host"]:
        return False
    try:
        os.kill(int(other["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, TypeError, ValueError):
        return False
    return False


def _release(path: str, me: dict) -> None:
    if _read_lock(path) == me:
        os.remove(path)


def model_sharded_state_dict(model):
    # a fresh dict each time: megatron stores the current DP group into it in place
    return model.sharded_state_dict(metadata=dict(SHARDING_METADATA))


MASTERS = "optimizer.state.fp32_param"  # a bf16 run's fp32 master weights: MASTERS.<weight's key>


def holds_masters(common: dict) -> bool:
    """Whether a checkpoint holds fp32 master weights beside its weights (a bf16 run saved it)."""
    return bool(common.get("config", {}).get("bf16"))


def fp32_weights(model, model_sd: dict, from_masters: bool) -> dict:
    """``model_sd`` with each trainable weight read into a new fp32 tensor: from the checkpoint's fp32
    masters when it holds them (exactly what a bf16 run stepped), else from its weights. So a load
    gets the exact fp32 values whatever precision saved and loads: the weights take them in their own
    dtype, the optimizer's fp32 masters exactly. Buffers and extra state are left as they are."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    out = {}
    for name, sh in model_sd.items():
        if name in trainable and isinstance(sh, (ShardedTensor, ShardedTensorFactory)):
            extra = {"dtype": torch.float32} if isinstance(sh, ShardedTensor) else {}
            sh = dataclasses.replace(sh, data=torch.empty_like(sh.data, dtype=torch.float32), **extra,
                                     key=f"{MASTERS}.{sh.key}" if from_masters else sh.key)
        out[name] = sh
    return out


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


def _save_strategy():
    """torch_dist, with the writing of each data-parallel-replicated tensor spread over its replicas
    (megatron's fully parallel save, Megatron-LM's default): without it replica 0 of every tensor,
    one rank of each DP group, writes all of them."""
    from megatron.core import parallel_state as ps
    from megatron.core.dist_checkpointing.serialization import get_default_save_sharded_strategy
    from megatron.core.dist_checkpointing.strategies.fully_parallel import FullyParallelSaveStrategyWrapper

    strategy = get_default_save_sharded_strategy()
    if not ps.model_parallel_is_initialized() or ps.get_data_parallel_world_size() == 1:
        return strategy
    return FullyParallelSaveStrategyWrapper(strategy, ps.get_data_parallel_group(with_context_parallel=True))


_SAVING = [None]  # the iteration being saved (read by forked writers: the fault injection below)


def _forked_writers_die_with_us() -> None:
    """megatron's torch_dist writer forks processes that write the files; a rank SIGKILLed while they
    ran left them behind (parent PID 1, ~300 MB each, ignoring SIGTERM with the trainer's handlers).
    Every process this one forks now gets SIGKILL when it dies, as the writer queue's manager does."""
    if not getattr(_forked_writers_die_with_us, "done", False) and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_forked_child)
        _forked_writers_die_with_us.done = True


def _forked_child() -> None:
    from megatron_grow.lifetime import kill_helper_with_parent

    kill_helper_with_parent()
    it, _, rank = os.environ.get("MEGATRON_GROW_KILL_IN_WRITE", "").partition("@")  # ITER[@RANK]
    if _SAVING[0] is not None and it == str(_SAVING[0]) and rank in ("", os.environ.get("RANK", "0")):
        os.kill(os.getppid(), signal.SIGKILL)  # fault injection for the tests: the rank dies mid-write
        time.sleep(30)  # (a writer still busy: it must go with its rank)


def _disk_full(root: str, e: BaseException) -> str | None:
    """How full the disk under ``root`` is, when ``e`` is a write that ran out of space (torch's zip
    writer says only 'unexpected pos'); else None."""
    import errno

    chain, x = [], e
    while x is not None and len(chain) < 10:
        chain.append(x)
        x = x.__cause__ or x.__context__
    if isinstance(e, CheckpointException) and e.failures:
        chain += [f[0] for f in e.failures.values()]
    nospace = any(getattr(x, "errno", None) == errno.ENOSPC or "No space left" in str(x) for x in chain)
    usage = shutil.disk_usage(root)
    if not nospace and usage.free > 1 << 20:
        return None
    return f"{usage.free / 2**20:.1f} MiB free of {usage.total / 2**20:,.0f} MiB"


def save(root: str, iteration: int, model, optimizer, scheduler, common: dict) -> str:
    """Save a complete checkpoint of ``iteration`` under ``root`` atomically; returns its path."""
    _writer_queue_dies_with_us()
    _forked_writers_die_with_us()
    _SAVING[0] = iteration
    final, tmp = iter_dir(root, iteration), iter_dir(root, iteration) + ".tmp"
    if dist.get_rank() == 0:
        os.makedirs(root, exist_ok=True)
        if os.path.exists(tmp):  # the leftover of a crashed save of this iteration
            shutil.rmtree(tmp)
        os.makedirs(tmp)
    dist.barrier()
    meta = dict(common, iteration=iteration)
    try:
        dist_checkpointing.save(_sharded_state(model, optimizer, scheduler, meta, True, False), tmp,
                                sharded_strategy=_save_strategy())
    except (Exception, CheckpointException) as e:
        full = _disk_full(root, e)
        if full is None:
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # (the partial save: its space back)
        latest = latest_iteration(root)
        raise CheckpointError(f"--save {root}: the disk is full ({full}) while saving iteration {iteration}; "
                              + (f"the checkpoint of iteration {latest} is intact. " if latest is not None else "")
                              + "Free space (or pass --keep-last-k K, or another --save) and resume with --load "
                              f"{root}") from None
    _SAVING[0] = None
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


def _hash_chunks(path: str, algo: str = HASH) -> list[int]:
    """The ``algo`` digest of each CHUNK of a file, read through mmap (no copy), the chunks split over
    two threads (both hashes release the GIL). Plain threads, not an executor: concurrent.futures
    refuses work once the interpreter is exiting, which is when a last save's thread may still run."""
    import mmap
    import threading

    fn = HASHES[algo]
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return [fn(b"")]
        n = -(-size // CHUNK)
        out = [0] * n
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            view = memoryview(m)

            def part(first: int, step: int = 2):
                for k in range(first, n, step):
                    out[k] = fn(view[k * CHUNK:(k + 1) * CHUNK])

            helper = threading.Thread(target=part, args=(1,))
            helper.start()
            try:
                part(0)
            finally:
                helper.join()
                view.release()
    return out


_CHECKSUM_THREADS: list = []


def write_checksums(path: str, background: bool = False) -> None:
    """This rank's share of the checkpoint's files (every world-size-th of the sorted listing), their
    sizes and chunk digests, into ``checksums.<rank>.json`` beside them. No collective: with
    ``background`` it runs in a thread, off the save's critical path (``wait_for_checksums`` waits for
    it; the entry point does before it exits). Needs a file system every rank sees, as torch_dist does."""
    import threading

    rank, world = dist.get_rank(), dist.get_world_size()

    def run():
        try:
            files = sorted(f for f in os.listdir(path) if os.path.isfile(os.path.join(path, f))
                           and not f.startswith("checksums"))
            mine = {f: {"size": os.path.getsize(os.path.join(path, f)), HASH: _hash_chunks(os.path.join(path, f))}
                    for f in files[rank::world]}
            mine[WORLD_KEY] = world  # (so a lost checksums.<rank>.json is noticed)
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


WORLD_KEY = "__world_size__"  # in checksums.<rank>.json: how many ranks wrote one


def verify_checksums(path: str) -> str | None:
    """The first problem with the files of checkpoint ``path`` against its ``checksums.<rank>.json``
    (a missing, truncated or changed file; a checksum file missing or unreadable), or None. A
    checkpoint without checksums passes."""
    want, worlds, found = {}, set(), set()
    for name in sorted(os.listdir(path)):
        if name.startswith("checksums.") and name.endswith(".json"):
            try:
                with open(os.path.join(path, name)) as f:
                    listed = json.load(f)
                worlds.add(listed.pop(WORLD_KEY, None))
            except (OSError, ValueError, AttributeError) as e:
                return f"{os.path.join(path, name)} is unreadable ({type(e).__name__}), so its files cannot be checked"
            found.add(name)
            want.update(listed)
    named = _storage_files(path)  # (the files torch_dist's .metadata says hold the tensors)
    missing = sorted(f for f in named if not os.path.isfile(os.path.join(path, f)))
    if missing:
        return f"{os.path.join(path, missing[0])} is missing (the checkpoint's .metadata names it)"
    if not want:
        return None
    world = max((w for w in worlds if isinstance(w, int)), default=None)  # (older checkpoints: not recorded)
    lost = [f"checksums.{r}.json" for r in range(world or 0) if f"checksums.{r}.json" not in found]
    if lost:
        return (f"{os.path.join(path, lost[0])} is missing, so that rank's files cannot be checked (was the job "
                f"killed right after this save? To load it unchecked, remove its checksums.*.json)")
    for name, w in sorted(want.items()):
        p = os.path.join(path, name)
        if not os.path.isfile(p):
            return f"{p} is missing"
        if os.path.getsize(p) != w["size"]:
            return f"{p} has {os.path.getsize(p)} bytes, {w['size']} were saved"
        algo = next(a for a in HASHES if a in w)  # (checkpoints of before 2026-12-02 hold CRC-32s)
        got = _hash_chunks(p, algo)
        if got != w[algo]:
            k = next(i for i, (a, b) in enumerate(zip(got, w[algo], strict=True)) if a != b)
            return f"{p} differs from what was saved ({algo} of bytes {k * CHUNK}..{(k + 1) * CHUNK})"
    return None


def _storage_files(path: str) -> set[str]:
    """The shard files a torch_dist checkpoint's .metadata names (empty when it cannot be read: the
    load reports that)."""
    from torch.distributed.checkpoint import FileSystemReader

    try:
        return {v.relative_path for v in FileSystemReader(path).read_metadata().storage_data.values()}
    except Exception:  # (no or damaged .metadata: not this check's to report)
        return set()


def read_common(path: str) -> dict:
    """The non-sharded part of a checkpoint (iteration, layout, config, data position, ...)."""
    return dist_checkpointing.load_common_state_dict(path)


def _listed(its: list[int]) -> str:
    return ", ".join(map(str, its)) or "none"


def damaged(root: str, it: int, e: Exception, file: str | None = None, fallback: bool = True) -> CheckpointError:
    """The error for a checkpoint that cannot be read: which directory (and ``file`` when known), why,
    and what to do (``fallback``: the trainer's --ckpt-fallback is an option)."""
    have = [i for i in iterations(root) if i != it]
    if isinstance(e, CheckpointException) and e.failures:  # the first rank's own error, not the traceback text
        e = next(iter(e.failures.values()))[0]
    why = f"{type(e).__name__}: {str(e)[:300]}" if str(e) else type(e).__name__
    where = f"{os.path.join(iter_dir(root, it), file)}: " if file else ""
    return CheckpointError(f"--load {root}: the checkpoint {iter_dir(root, it)} cannot be read ({where}{why}); "
                           f"it is damaged or incomplete. Load another with --ckpt-step N"
                           + (" or add --ckpt-fallback" if fallback else "")
                           + f" (other complete ones: {_listed(have)})")


def read_common_or_raise(root: str, it: int, fallback: bool = True) -> dict:
    try:
        return read_common(iter_dir(root, it))
    except Exception as e:  # a missing or truncated common.pt / metadata
        raise damaged(root, it, e, "common.pt", fallback) from None


def load(root: str, model, optimizer, scheduler, iteration: int | None = None, layout: dict | None = None) -> dict:
    """Load the checkpoint of ``iteration`` (default: the latest complete one) in ``root`` into model,
    optimizer and scheduler; the per-rank RNG states too when ``layout`` (RunConfig.layout) is the
    one it was saved at. Returns the checkpoint's common state (iteration, consumed_samples, ...)."""
    iteration = latest_iteration(root) if iteration is None else iteration
    if iteration is None:
        raise no_checkpoint(root)
    path = iter_dir(root, iteration)
    common = read_common_or_raise(root, iteration)
    same_layout = layout is not None and common.get("layout") == layout
    sd = _sharded_state(model, optimizer, scheduler, {}, same_layout, True)
    sd.pop("scheduler")
    sd["model"] = fp32_weights(model, sd["model"], holds_masters(common))
    try:
        state = dist_checkpointing.load(sd, path)
    except (Exception, CheckpointException) as e:  # a truncated shard, a missing .metadata, ...
        raise damaged(root, iteration, e) from None
    model.load_state_dict(state["model"], strict=True)
    optimizer.load_state_dict(state["optimizer"])
    optimizer.set_masters(state["model"])
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


def resume_config(cfg, for_training: bool = True):
    """The config to build for resuming --load: the grown one when the checkpoint is past growth.

    A checkpoint whose depth or family matches neither is refused, saying whether
    tools/expand_checkpoint.py can grow it."""
    try:
        it = latest_iteration(cfg.load) if cfg.ckpt_step is None else cfg.ckpt_step
    except ValueError:
        have = iterations(cfg.load)
        raise CheckpointError(f"--load {cfg.load}: {os.path.join(cfg.load, TRACKER)} does not hold an "
                              f"iteration number; pick a complete checkpoint with --ckpt-step N (complete ones: "
                              f"{_listed(have)})") from None
    if it is None:
        raise no_checkpoint(cfg.load)
    if not os.path.isdir(iter_dir(cfg.load, it)):
        have = iterations(cfg.load)
        if cfg.ckpt_step is None:  # (the tracker names it)
            raise CheckpointError(f"--load {cfg.load}: {os.path.join(cfg.load, TRACKER)} names iteration {it}, but "
                                  f"{iter_dir(cfg.load, it)} is not there (complete ones: {_listed(have)}); pick "
                                  f"one with --ckpt-step N")
        raise CheckpointError(f"--load {cfg.load} --ckpt-step {it}: no complete checkpoint of that iteration there "
                              f"(complete ones: {_listed(have)})")
    chosen = cfg.ckpt_step is not None
    it = intact_iteration(cfg, it)
    common = read_common_or_raise(cfg.load, it)
    later = [i for i in iterations(cfg.load) if i > it]
    if chosen and later and cfg.save and os.path.abspath(cfg.save) == os.path.abspath(cfg.load):
        raise CheckpointError(f"--ckpt-step {it} with --save {cfg.save} "
                              f"(the --load directory) would overwrite its later "
                              f"checkpoints (iterations {', '.join(map(str, later))}); choose a new --save directory")
    layers, family = common["num_layers"], common["family"]
    while (config.growth_requested(cfg) and cfg.num_layers < cfg.grow_to_layers <= layers
           and it >= config.grow_iteration(cfg)):  # (--grow-schedule: past one or more steps)
        cfg = config.grown_config(cfg)
    if family != cfg.model or layers != cfg.num_layers:
        fix = (f" Grow it first: python tools/expand_checkpoint.py --load {cfg.load} --save NEW_DIR "
               f"--target-num-layers {cfg.num_layers}, then --load NEW_DIR."
               if family == cfg.model and layers < cfg.num_layers else
               " tools/expand_checkpoint.py cannot fix this (it only adds layers to a model of the same family).")
        raise CheckpointError(f"--load {cfg.load}: the checkpoint (iteration {it}) is a {layers}-layer {family} model, "
                              f"but this run builds a {cfg.num_layers}-layer {cfg.model} model.{fix}")
    saved = common["config"].get("optimizer", "adam")
    if saved != cfg.optimizer:  # (first: other optimizer defaults would also change the schedule's weight decay)
        raise CheckpointError(f"--load {cfg.load}: the checkpoint holds {saved} optimizer state, but this run uses "
                              f"--optimizer {cfg.optimizer}; resume with --optimizer {saved}")
    shape_problems(cfg, common, it)
    if it == 0:  # an imported model (tools/import_hf.py): no step of its schedule was taken, the flags' applies
        cfg = dataclasses.replace(cfg, override_opt_param_scheduler=True)
    elif for_training:  # (tools that only read the weights, such as dump_logits, take any schedule flags)
        schedule_problems(cfg, common, it)
        blend_problems(cfg, common, it)
    return dataclasses.replace(cfg, ckpt_step=it)  # the load reads exactly the iteration checked here


def intact_iteration(cfg, it: int) -> int:
    """``it`` if its files match the checksums saved with them; else, with --ckpt-fallback, the newest
    earlier one that does (rank 0 reads the files, every rank gets the answer)."""
    candidates = [it] + ([i for i in reversed(iterations(cfg.load)) if i < it] if cfg.ckpt_fallback else [])
    for i in candidates:
        box = [None]
        if dist.get_rank() == 0:
            box[0] = verify_checksums(iter_dir(cfg.load, i))
        dist.broadcast_object_list(box, src=0)
        if box[0] is None:
            return i
        if not cfg.ckpt_fallback:
            raise CheckpointError(f"--load {cfg.load}: the checkpoint of iteration {i} is damaged: {box[0]}. Add "
                                  f"--ckpt-fallback to load the newest intact earlier one, or pick one with "
                                  f"--ckpt-step N (complete ones: {_listed(iterations(cfg.load))})")
        if dist.get_rank() == 0:
            print(f"--ckpt-fallback: the checkpoint of iteration {i} is damaged ({box[0]}); trying the one before",
                  file=sys.stderr, flush=True)
    raise CheckpointError(f"--load {cfg.load}: no intact checkpoint there (every one fails its checksums)")


SHAPE_FLAGS = ("hidden_size", "ffn_hidden_size", "num_attention_heads", "num_query_groups", "kv_channels",
               "vocab_size", "q_lora_rank", "kv_lora_rank", "qk_head_dim", "qk_pos_emb_head_dim", "v_head_dim",
               "num_experts", "moe_ffn_hidden_size", "moe_shared_expert_intermediate_size", "moe_first_dense_layers",
               "untie_embeddings_and_output_weights",
               # (not shapes, but the function the weights compute: models.architecture)
               "rotary_base", "norm_epsilon", "use_rope_scaling", "rope_scaling_factor", "rotary_percent",
               "apply_layernorm_1p")


def shape_problems(cfg, common: dict, it: int) -> None:
    """The shapes the checkpoint was saved with against the flags: one message naming every
    difference (instead of megatron's shape-mismatch traceback at load)."""
    saved = common["config"]
    diff = [(k, saved[k], getattr(cfg, k)) for k in SHAPE_FLAGS
            if k in saved and getattr(cfg, k) is not None and saved[k] != getattr(cfg, k)]
    if diff:
        raise CheckpointError(f"--load {cfg.load}: the checkpoint (iteration {it}) was saved with "
                              + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v, _ in diff) + "; this run has "
                              + ", ".join(f"--{k.replace('_', '-')} {w}" for k, _, w in diff)
                              + ". Pass the checkpoint's values (only depth can change, by growth)")


def schedule_problems(cfg, common: dict, it: int) -> None:
    """Resume semantics as in Megatron: the checkpoint's LR schedule continues only when the flags
    give the same one; a differing one is refused, naming both values, unless
    --override-opt-param-scheduler applies the flags' schedule from the checkpoint's iteration on."""
    if cfg.train_iters < it:
        raise CheckpointError(f"--train-iters {cfg.train_iters} is below the checkpoint's iteration {it} "
                              f"(--load {cfg.load}): nothing would be trained. To train further give "
                              f"--train-iters > {it} and --override-opt-param-scheduler (the schedule is then "
                              "recomputed for the new length)")
    saved_cfg = config.saved_config(common["config"])
    old, new = saved_cfg.lr_schedule(), cfg.lr_schedule()
    diff = {k: (old.get(k), v) for k, v in new.items() if old.get(k) != v}
    if not diff:
        return
    what = "; ".join(f"--{k.replace('_', '-')} {v} (checkpoint: {o})" for k, (o, v) in diff.items())
    if not cfg.override_opt_param_scheduler:
        raise CheckpointError(f"--load {cfg.load}: "
                              f"the LR schedule flags differ from the checkpoint's (iteration {it}): "
                              f"{what}. Pass the checkpoint's values to continue its schedule, or add "
                              f"--override-opt-param-scheduler to apply the flags' schedule from iteration {it} on")
    if int(os.environ.get("RANK", 0)) == 0:
        print(f"--override-opt-param-scheduler: the LR schedule from the flags replaces the checkpoint's from "
              f"iteration {it} on: {what}", file=sys.stderr, flush=True)


def blend_problems(cfg, common: dict, it: int) -> None:
    """The data the checkpoint was trained on (its "data_blend") against the data flags: the same
    prefixes (by their files' contents), weights and --split continue; other data is refused, naming
    both, unless --override-data-blend, which warns and trains on the new data from the checkpoint's
    sample count on."""
    from megatron_grow.data.datasets import blend_change, data_blend

    change = blend_change(common.get("data_blend"), data_blend(cfg))
    if change is None:
        return
    at = common.get("consumed_samples", 0)
    if not cfg.override_data_blend:
        raise CheckpointError(f"--load {cfg.load}: the data differ from the checkpoint's (iteration {it}): the "
                              f"checkpoint trained on {change}. Pass the checkpoint's data flags to continue on its "
                              f"data, or add --override-data-blend to train on this run's data from sample {at} on")
    if int(os.environ.get("RANK", 0)) == 0:
        print(f"warning: --override-data-blend: the checkpoint (iteration {it}) trained on {change}; training goes on "
              f"with this run's data from sample {at} on", file=sys.stderr, flush=True)
