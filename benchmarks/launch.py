"""Run the trainer as a benchmark step: one torchrun job per run, metrics read back from its JSONL.

Shared by the benchmarks; each run is a real `python -m megatron_grow.train` job (the same entry
point a user launches), killed with its whole process session if it outlives ``timeout``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")


def read_metrics(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _run_job(cmd: list[str], env: dict, log: str, timeout: float) -> None:
    """Run ``cmd`` in the repository with its output in ``log``; kill its whole process session when it
    ends or outlives ``timeout``; raise with the log's tail when it failed."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    if proc.returncode != 0:
        with open(log) as f:
            tail = f.read()[-3000:]
        why = f"timed out after {timeout:.0f} s" if timed_out else f"failed (exit {proc.returncode})"
        raise RuntimeError(f"run {why}: {' '.join(cmd)}\n{tail}")


def run_worker(script: str, nproc: int, args: list[str], timeout: float = 900, env: dict | None = None):
    """A benchmark's own worker mode as one torchrun job: ``script --worker --out FILE args`` on ``nproc``
    processes of one thread each; returns what the worker wrote to FILE (JSON)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "out.json")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
               os.path.abspath(script), "--worker", "--out", out, *args]
        _run_job(cmd, dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT, **(env or {})),
                 os.path.join(d, "log"), timeout)
        with open(out) as f:
            return json.load(f)


def train(args: list[str], metrics: str, nproc: int = 1, timeout: float = 3600, log: str | None = None) -> dict:
    """Train with ``args`` on ``nproc`` processes; returns {"records", "wall_s"}. Raises with the
    tail of the log when the run fails. An existing ``metrics`` file is replaced."""
    if os.path.exists(metrics):
        os.remove(metrics)
    os.makedirs(os.path.dirname(os.path.abspath(metrics)), exist_ok=True)
    log = log or metrics + ".log"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "megatron_grow.train", *args, "--no-progress", "--metrics-file", metrics]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.time()
    _run_job(cmd, env, log, timeout)
    wall = time.time() - t0
    return {"records": read_metrics(metrics), "wall_s": wall}


def last(records: list[dict], key: str):
    vals = [r[key] for r in records if key in r]
    return vals[-1] if vals else None


def write(stem: str, data: dict, table: str) -> None:
    """``stem``.json and ``stem``.md under benchmarks/results (or wherever ``stem`` points)."""
    os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
    with open(stem + ".json", "w") as f:
        json.dump(data, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(table)
