"""Faults a long run meets, driven through real torchrun jobs: resuming with other flags, non-finite
updates, loading a chosen iteration. Nothing saved is lost or overwritten, nothing fails silently."""

import collections
import json
import os
import types

import pytest

from conftest import TINY, job_processes, kill_job, launch, losses, read_metrics, torchrun, torchrun_cmd
from megatron_grow import runstate, training

ARGS = ["--model", "llama3", *TINY, "--num-layers", "2", "--mock-data", "--vocab-size", "1000",
        "--micro-batch-size", "2", "--global-batch-size", "2", "--optimizer", "adam", "--lr", "1e-2",
        "--lr-warmup-iters", "2", "--lr-wsd-decay-iters", "1", "--eval-interval", "100", "--eval-iters", "1"]


def lrs(path) -> dict[int, float]:
    return {r["iter"]: r["lr"] for r in read_metrics(path) if "lr" in r}


def test_resume_with_another_schedule_is_refused_or_applied(tmp_path):
    ck, first = str(tmp_path / "ck"), tmp_path / "first.jsonl"
    torchrun(1, [*ARGS, "--train-iters", "6", "--save", ck, "--save-interval", "3", "--metrics-file", str(first)])
    assert lrs(first)[6] == 0.0  # a finished WSD run ends at --min-lr
    # continuing it the naive way used to train at LR 0 (the checkpoint's schedule silently won)
    res = torchrun(1, [*ARGS, "--train-iters", "10", "--lr", "2e-2", "--load", ck, "--save", ck], check=False)
    assert res.returncode != 0
    assert "--lr 0.02 (checkpoint: 0.01)" in res.stdout and "--train-iters 10 (checkpoint: 6)" in res.stdout
    assert "--override-opt-param-scheduler" in res.stdout
    res = torchrun(1, [*ARGS, "--train-iters", "4", "--load", ck, "--save", ck], check=False)
    assert res.returncode != 0 and "--train-iters 4 is below the checkpoint's iteration 6" in res.stdout
    assert open(os.path.join(ck, "latest_checkpointed_iteration.txt")).read() == "6"  # nothing was touched
    # applied: the flags' schedule (max LR 2e-2, decay in the last iteration of 10) from iteration 6 on
    ext = tmp_path / "ext.jsonl"
    torchrun(1, [*ARGS, "--train-iters", "10", "--lr", "2e-2", "--load", ck, "--save", ck,
                 "--override-opt-param-scheduler", "--metrics-file", str(ext)])
    assert lrs(ext) == {7: 2e-2, 8: 2e-2, 9: 2e-2, 10: 0.0}, lrs(ext)


def test_ckpt_step_loads_a_chosen_iteration_and_never_overwrites(tmp_path):
    ck, full = str(tmp_path / "ck"), tmp_path / "full.jsonl"
    torchrun(1, [*ARGS, "--train-iters", "6", "--save", ck, "--save-interval", "3", "--metrics-file", str(full)])
    res = torchrun(1, [*ARGS, "--train-iters", "6", "--load", ck, "--save", ck, "--ckpt-step", "3"], check=False)
    assert res.returncode != 0 and "would overwrite its later checkpoints (iterations 6)" in res.stdout
    res = torchrun(1, [*ARGS, "--train-iters", "6", "--load", ck, "--ckpt-step", "4"], check=False)
    assert res.returncode != 0 and "complete ones: 3, 6" in res.stdout
    again = tmp_path / "again.jsonl"
    torchrun(1, [*ARGS, "--train-iters", "6", "--load", ck, "--ckpt-step", "3", "--save", str(tmp_path / "ck2"),
                 "--metrics-file", str(again)])
    assert losses(again) == {k: v for k, v in losses(full).items() if k > 3}  # exact, from iteration 3


def test_non_finite_updates_are_skipped_and_the_run_stops(tmp_path):
    """An LR of 1e4 drives the weights to a NaN gradient within a few steps. Every rank (TP2) skips
    those updates, the metrics stay strict JSON, the run stops after --max-skipped-steps in a row with
    exit status 3, and no checkpoint is written after the first skipped step."""
    ck, m = str(tmp_path / "ck"), tmp_path / "m.jsonl"
    res = torchrun(2, [*ARGS, "--tensor-model-parallel-size", "2", "--lr", "1e4", "--lr-warmup-iters", "0",
                       "--train-iters", "30", "--max-skipped-steps", "3", "--save", ck, "--save-interval", "1",
                       "--metrics-file", str(m)], check=False)
    assert res.returncode != 0, res.stdout[-3000:]
    assert "3 updates in a row skipped (--max-skipped-steps 3" in res.stdout, res.stdout[-3000:]

    def no_constants(x):
        raise ValueError(f"not strict JSON: {x}")

    recs = [json.loads(line, parse_constant=no_constants) for line in open(m)]
    steps = [r for r in recs if "lm_loss" in r]
    skipped = [r["iter"] for r in steps if r.get("skipped")]
    assert len(skipped) == 3 and skipped == list(range(skipped[0], skipped[0] + 3)), skipped
    assert steps[-1]["iter"] == skipped[-1] and steps[-1]["skipped_steps"] == 3
    assert int(open(os.path.join(ck, "latest_checkpointed_iteration.txt")).read()) == skipped[0] - 1
    assert not [d for d in os.listdir(ck) if d.startswith("iter_") and int(d[5:12]) >= skipped[0]]


def test_loss_spike_skips_the_update():
    cfg = types.SimpleNamespace(loss_spike_factor=1.5)
    state = types.SimpleNamespace(recent_losses=collections.deque([2.0] * 19, maxlen=runstate.SPIKE_WINDOW))
    assert training.skip_reason(cfg, state, 9.0, 1.0) is None  # not enough history yet
    state.recent_losses.append(2.0)
    assert training.skip_reason(cfg, state, 2.9, 1.0) is None
    assert "--loss-spike-factor 1.5" in training.skip_reason(cfg, state, 3.1, 1.0)
    assert "grad norm nan" in training.skip_reason(cfg, state, 2.0, float("nan"))
    assert training.skip_reason(types.SimpleNamespace(loss_spike_factor=None), state, 30.0, 1.0) is None


def _launch(nproc, args, log, env=None):
    """A torchrun job (``nproc`` None: one plain process) with output to the file ``log``."""
    with open(log, "w") as f:
        return launch(torchrun_cmd(nproc, args), f, env)


def _wait_for_the_job(proc, timeout: float) -> list[int]:
    """Wait until no process of ``proc``'s job is left, or ``timeout``; returns those left."""
    import time

    deadline = time.time() + timeout
    while job_processes(proc.tag) and time.time() < deadline:
        time.sleep(0.5)
    return job_processes(proc.tag)


@pytest.mark.parametrize("target", ["launcher", "worker", "launcher-usr1"])
def test_sigterm_saves_and_stops(tmp_path, target):
    """SIGTERM to torchrun (forwarded to the workers) or to one worker only, or SIGUSR1 to torchrun
    (which kills it; its workers get SIGHUP from the kernel): every rank finishes the iteration,
    the checkpoint of that iteration is written, the job ends, and no process of it outlives it;
    the relaunch continues from there."""
    import signal
    import subprocess
    import time

    ck, m, log = str(tmp_path / "ck"), tmp_path / "m.jsonl", tmp_path / "log"
    # (a checkpoint every 2 iterations: the writer's helper process then exists when the signal comes)
    args = [*ARGS, "--tensor-model-parallel-size", "2", "--train-iters", "100000", "--save", ck,
            "--save-interval", "2", "--metrics-file", str(m)]
    proc = _launch(2, args, log)
    try:
        deadline = time.time() + 240
        def logged():  # complete lines only: the file is being written
            return sum('"lm_loss"' in line for line in open(m) if line.endswith("\n")) if m.exists() else 0

        while time.time() < deadline and logged() < 3:
            time.sleep(0.5)
        assert logged() >= 3, open(log).read()[-3000:]
        if target == "worker":
            kids = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
            os.kill(int(sorted(kids, key=int)[-1]), signal.SIGTERM)
        else:
            proc.send_signal(signal.SIGUSR1 if target == "launcher-usr1" else signal.SIGTERM)
        proc.wait(timeout=120)
        left = _wait_for_the_job(proc, 120)  # (torchrun killed by SIGUSR1 does not wait for its workers)
    finally:
        kill_job(proc.tag)
        proc.wait()
    out = open(log).read()
    got = "SIGHUP received" if target == "launcher-usr1" else "SIGTERM received"
    assert proc.returncode != 0 and got in out and "relaunch with --load" in out, out[-3000:]
    assert not left, left
    last = max(losses(m))
    assert int(open(os.path.join(ck, "latest_checkpointed_iteration.txt")).read()) == last
    more = tmp_path / "more.jsonl"
    torchrun(2, [*ARGS, "--tensor-model-parallel-size", "2", "--train-iters", "100000", "--exit-interval",
                 str(last + 2), "--load", ck, "--save", ck, "--metrics-file", str(more)])
    assert sorted(losses(more)) == [last + 1, last + 2]


def test_exit_duration_saves_and_stops(tmp_path):
    ck = str(tmp_path / "ck")
    res = torchrun(1, [*ARGS, "--train-iters", "100000", "--exit-duration-in-mins", "0.0001", "--save", ck],
                   check=False)
    assert res.returncode != 0 and "--exit-duration-in-mins reached" in res.stdout, res.stdout[-3000:]
    assert open(os.path.join(ck, "latest_checkpointed_iteration.txt")).read() == "1"


def test_keep_last_k_prunes_old_checkpoints_and_leftovers(tmp_path):
    ck = tmp_path / "ck"
    (ck / "iter_0000099.tmp").mkdir(parents=True)  # the leftover of an interrupted save
    torchrun(1, [*ARGS, "--train-iters", "5", "--save", str(ck), "--save-interval", "1", "--keep-last-k", "2"])
    assert sorted(os.listdir(ck)) == ["iter_0000004", "iter_0000005", "latest_checkpointed_iteration.txt"]


def test_damaged_or_mismatched_checkpoints_name_the_file(tmp_path):
    """Checksums saved with every checkpoint catch a truncated, bit-flipped or missing file before
    loading; --ckpt-fallback then loads the newest intact one; without checksums (or when they
    pass) a read error still names the directory; a checkpoint of another shape is one message."""
    import shutil

    ck, full = tmp_path / "ck", tmp_path / "full.jsonl"
    torchrun(1, [*ARGS, "--train-iters", "6", "--save", str(ck), "--save-interval", "2", "--exit-interval", "4",
                 "--metrics-file", str(full)])
    resume = [*ARGS, "--train-iters", "6"]

    def damaged(name, hurt, extra=(), check=False):
        d = tmp_path / name
        shutil.copytree(ck, d)
        hurt(d)
        res = torchrun(1, [*resume, *extra, "--load", str(d)], check=check)
        assert check or res.returncode != 0
        return res.stdout

    def shard(d):
        return next(p for p in sorted((d / "iter_0000004").iterdir()) if p.suffix == ".distcp")

    def truncate(d):
        shard(d).write_bytes(shard(d).read_bytes()[:100])

    def flip(d):
        b = bytearray(shard(d).read_bytes())
        b[len(b) // 2] ^= 0x10
        shard(d).write_bytes(bytes(b))

    out = damaged("trunc", truncate)
    assert "the checkpoint of iteration 4 is damaged" in out and "has 100 bytes" in out, out[-3000:]
    assert "--ckpt-fallback" in out and "complete ones: 2, 4" in out
    assert "differs from what was saved" in damaged("flip", flip)
    assert ".metadata is missing" in damaged("nometa", lambda d: os.remove(d / "iter_0000004" / ".metadata"))
    m = tmp_path / "fallback.jsonl"
    out = damaged("fallback", flip, ["--ckpt-fallback", "--metrics-file", str(m)], check=True)
    assert "--ckpt-fallback: the checkpoint of iteration 4 is damaged" in out
    got = losses(m)
    assert min(got) == 3 and {k: got[k] for k in (3, 4)} == {k: v for k, v in losses(full).items() if k > 2}

    def unlisted_truncate(d):
        for f in (d / "iter_0000004").glob("checksums.*.json"):  # as saved before checksums existed
            os.remove(f)
        truncate(d)

    out = damaged("trunc_old", unlisted_truncate)
    assert f"{tmp_path / 'trunc_old' / 'iter_0000004'} cannot be read" in out and "EOFError" in out, out[-3000:]
    out = damaged("tracker", lambda d: (d / "latest_checkpointed_iteration.txt").write_text("garbage"))
    assert "does not hold an iteration number" in out and "complete ones: 2, 4" in out, out[-3000:]
    out = damaged("shape", lambda d: None, ["--hidden-size", "128", "--ffn-hidden-size", "256"])
    assert "was saved with --hidden-size 64, --ffn-hidden-size 128; this run has --hidden-size 128, " \
           "--ffn-hidden-size 256" in out, out[-3000:]


def _killed_job(nproc, args, log, env) -> tuple[int, list[int]]:
    """A job that a fault injection in ``env`` kills: its exit status once it ended, and the processes
    of it still running 5 s later (then killed)."""
    proc = _launch(nproc, args, log, env)
    try:
        proc.wait(timeout=240)
        left = _wait_for_the_job(proc, 5)
    finally:
        kill_job(proc.tag)
    return proc.returncode, left


def test_a_killed_rank_leaves_no_process_behind(tmp_path):
    """A process SIGKILLed right after its checkpoint was written (megatron's writer keeps a helper
    process; torchrun would kill it with the worker's process group, a plain `python -m` run could
    not) leaves nothing running."""
    status, left = _killed_job(None, [*ARGS, "--train-iters", "6", "--save", str(tmp_path / "ck"), "--save-interval",
                                      "2"], tmp_path / "log", env={"MEGATRON_GROW_KILL_IN_SAVE": "4"})
    assert status != 0 and not left, left


def test_a_rank_killed_while_writing_leaves_no_writer_behind(tmp_path):
    """SIGKILL while megatron's forked writer processes are writing the checkpoint's files: they go with
    the rank (they were left running, parent PID 1, ignoring SIGTERM), and the commit never happened."""
    ck = tmp_path / "ck"
    status, left = _killed_job(None, [*ARGS, "--train-iters", "6", "--save", str(ck), "--save-interval", "2"],
                               tmp_path / "log", env={"MEGATRON_GROW_KILL_IN_WRITE": "4"})
    assert status != 0 and not left, left
    assert open(ck / "latest_checkpointed_iteration.txt").read() == "2" and not (ck / "iter_0000004").exists()


def test_a_rank_killed_during_the_first_save_is_explained(tmp_path):
    """Rank 1 SIGKILLed while its writers write the first checkpoint: rank 0 says another rank is gone
    and how to go on (it printed gloo's 'Connection closed by peer' traceback) and exits with status 5;
    nothing committed, no process left."""
    log, ck = tmp_path / "log", tmp_path / "ck"
    status, left = _killed_job(2, [*ARGS, "--global-batch-size", "4", "--train-iters", "6", "--save", str(ck),
                                   "--save-interval", "2"], log, env={"MEGATRON_GROW_KILL_IN_WRITE": "2@1"})
    out = log.read_text()
    assert status != 0 and not left, (left, out[-3000:])
    assert "rank 0 stopped: another rank is gone (killed or crashed)" in out and "[rank0]: Traceback" not in out, out
    assert not (ck / "latest_checkpointed_iteration.txt").exists() and not (ck / "iter_0000002").exists()


def test_a_frozen_rank_ends_the_job_after_the_timeout(tmp_path):
    """A rank stopped dead (SIGSTOP) mid-run: the other one fails its collective after
    --distributed-timeout-minutes, naming the flag, and torchrun ends the job instead of hanging
    for gloo's default 30 minutes."""
    import signal
    import subprocess
    import time

    m, log = tmp_path / "m.jsonl", tmp_path / "log"
    proc = _launch(2, [*ARGS, "--tensor-model-parallel-size", "2", "--train-iters", "100000", "--metrics-file", str(m),
                       "--distributed-timeout-minutes", "0.25"], log)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and (not m.exists() or open(m).read().count('"lm_loss"') < 3):
            time.sleep(0.5)
        kids = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        os.kill(int(sorted(kids, key=int)[-1]), signal.SIGSTOP)
        proc.wait(timeout=120)  # 15 s of timeout, then torchrun's 30 s of grace before it SIGKILLs the frozen one
        # (fixed in torch 2.13 for a failed worker: --shutdown-timeout applies to signals only)
    finally:
        kill_job(proc.tag)
        proc.wait()
    out = open(log).read()
    assert proc.returncode != 0 and "waited longer than --distributed-timeout-minutes 0.25" in out, out[-3000:]


def test_a_full_disk_during_a_save_says_so(tmp_path):
    """A save that runs out of disk space: the last line says the disk is full, names --save and the intact
    previous checkpoint, and the partial save is freed (it ended on `enforce fail at inline_container.cc`)."""
    import subprocess

    probe = tmp_path / "probe"
    torchrun(1, [*ARGS, "--train-iters", "6", "--save", str(probe), "--exit-interval", "2"])
    size = sum(f.stat().st_size for f in (probe / "iter_0000002").iterdir())
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={int(size * 1.6)}", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("no tmpfs mount here (needs root): a small disk to fill")
    try:
        ck = disk / "ck"
        res = torchrun(1, [*ARGS, "--train-iters", "6", "--save", str(ck), "--save-interval", "2"], check=False)
        assert res.returncode != 0 and f"--save {ck}: the disk is full" in res.stdout, res.stdout[-3000:]
        assert "the checkpoint of iteration 2 is intact" in res.stdout.strip().splitlines()[-1]  # (the last word)
        assert (ck / "latest_checkpointed_iteration.txt").read_text() == "2"
        assert not (ck / "iter_0000004.tmp").exists()
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
