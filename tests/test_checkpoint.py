"""Checkpoints: exact resume, atomic save under a killed process, reload into other layouts."""

import concurrent.futures
import json
import os
import socket
import subprocess
import sys

import torch

from conftest import TINY, losses, read_metrics, torchrun

ARGS = ["--model", "llama3", *TINY, "--num-layers", "2", "--mock-data", "--vocab-size", "1000",
        "--micro-batch-size", "2", "--global-batch-size", "4", "--lr", "1e-2", "--lr-warmup-iters", "2",
        "--eval-interval", "3", "--eval-iters", "2"]
TP2PP2 = ["--tensor-model-parallel-size", "2", "--pipeline-model-parallel-size", "2"]


def test_resume_is_exact(tmp_path):
    full, part = tmp_path / "full.jsonl", tmp_path / "part.jsonl"
    torchrun(2, [*ARGS, "--train-iters", "8", "--metrics-file", str(full)])
    ck = str(tmp_path / "ck")
    torchrun(2, [*ARGS, "--train-iters", "8", "--save", ck, "--exit-interval", "4", "--metrics-file", str(part)])
    assert open(os.path.join(ck, "latest_checkpointed_iteration.txt")).read() == "4"
    resumed = tmp_path / "resumed.jsonl"
    torchrun(2, [*ARGS, "--train-iters", "8", "--load", ck, "--save", ck, "--metrics-file", str(resumed)])
    after = losses(resumed)
    assert sorted(after) == [5, 6, 7, 8]
    ref = {k: v for k, v in losses(full).items() if k > 4}
    assert after == ref, (after, ref)  # bit-exact: same data, same state, same order
    assert not any(k.startswith("gpu_") or k == "mfu" for r in read_metrics(full) for k in r)  # none on CPU
    vals = [r["val_loss"] for r in read_metrics(resumed) if "val_loss" in r]
    assert vals == [r["val_loss"] for r in read_metrics(full) if "val_loss" in r and r["iter"] > 4]


def test_save_is_atomic_when_killed(tmp_path):
    ck = str(tmp_path / "ck")
    res = torchrun(1, [*ARGS, "--train-iters", "6", "--save", ck, "--save-interval", "2"],
                   env={"MEGATRON_GROW_KILL_IN_SAVE": "4"}, check=False)
    assert res.returncode != 0
    # the shards of iteration 4 were written but never committed: iteration 2 stays the one loaded
    assert os.path.isdir(os.path.join(ck, "iter_0000004.tmp"))
    assert not os.path.exists(os.path.join(ck, "iter_0000004"))
    assert open(os.path.join(ck, "latest_checkpointed_iteration.txt")).read() == "2"
    m = tmp_path / "m.jsonl"
    torchrun(1, [*ARGS, "--train-iters", "6", "--load", ck, "--save", ck, "--save-interval", "2",
                 "--metrics-file", str(m)])
    assert min(losses(m)) == 3  # resumed after iteration 2
    assert open(os.path.join(ck, "latest_checkpointed_iteration.txt")).read() == "6"
    assert not os.path.exists(os.path.join(ck, "iter_0000004.tmp"))  # the leftover was replaced


def test_refuses_to_overwrite_a_checkpoint(tmp_path):
    """Refused with the tracker and without it (lost: the iter_N directories are what counts); --load of
    a directory that lost its tracker names the checkpoints there and the flag that picks one."""
    ck = str(tmp_path / "ck")
    torchrun(1, [*ARGS, "--train-iters", "4", "--save", ck, "--save-interval", "2"])
    res = torchrun(1, [*ARGS, "--train-iters", "3", "--save", ck], check=False)
    assert res.returncode != 0 and "already holds a checkpoint" in res.stdout
    os.remove(os.path.join(ck, "latest_checkpointed_iteration.txt"))
    before = sorted(os.listdir(ck))
    res = torchrun(1, [*ARGS, "--train-iters", "3", "--save", ck, "--seed", "7"], check=False)
    assert res.returncode != 0 and "already holds a checkpoint" in res.stdout and sorted(os.listdir(ck)) == before
    res = torchrun(1, [*ARGS, "--train-iters", "6", "--load", ck, "--save", ck], check=False)
    assert res.returncode != 0 and "holds checkpoints of iterations 2, 4; pick one with --ckpt-step N" in res.stdout
    with open(os.path.join(ck, "latest_checkpointed_iteration.txt"), "w") as f:
        f.write("99")  # a tracker naming a checkpoint that is not there: said so, no flag blamed that was not given
    res = torchrun(1, [*ARGS, "--train-iters", "6", "--load", ck, "--save", ck], check=False)
    assert res.returncode != 0 and "latest_checkpointed_iteration.txt names iteration 99, but" in res.stdout \
        and "--ckpt-step 99" not in res.stdout, res.stdout


def test_reload_into_other_layouts_gives_identical_logits(tmp_path):
    ck = str(tmp_path / "ck")
    torchrun(4, [*ARGS, *TP2PP2, "--train-iters", "3", "--save", ck])
    outs = {}
    for name, nproc, layout in [("tp2pp2", 4, TP2PP2), ("tp1pp1", 1, []),
                                ("tp1pp2", 2, ["--pipeline-model-parallel-size", "2"]),
                                ("tp2pp1", 2, ["--tensor-model-parallel-size", "2"])]:
        out = tmp_path / f"{name}.pt"
        torchrun(nproc, ["--out", str(out), *ARGS, *layout, "--load", ck], module="tools.dump_logits")
        outs[name] = torch.load(out)
    ref = outs.pop("tp2pp2")
    fresh = tmp_path / "fresh.pt"
    torchrun(1, ["--out", str(fresh), *ARGS], module="tools.dump_logits")
    assert not torch.allclose(torch.load(fresh), ref, atol=1e-3)  # the checkpoint really was loaded
    for name, logits in outs.items():
        assert logits.shape == ref.shape
        assert torch.allclose(logits, ref, rtol=0, atol=2e-5), (name, (logits - ref).abs().max())


def test_checksums_catch_changes_and_finish_when_the_process_exits(tmp_path):
    """A save's checksums are written by a thread; a process that exits right after starting it still
    gets them (a thread pool there died at interpreter exit under load, leaving the file out). They
    catch a flipped byte in a later chunk and a truncation; CRC-32 checksums of older checkpoints verify."""
    import json
    import subprocess
    import sys
    import zlib

    from megatron_grow import checkpointing

    d = tmp_path / "iter_0000001"
    d.mkdir()
    blob = bytes(range(256)) * (checkpointing.CHUNK // 256) + b"tail"  # two chunks
    (d / "0_0.distcp").write_bytes(blob)
    (d / "common.pt").write_bytes(b"x" * 100)
    code = ("import sys, torch.distributed as dist\n"
            f"dist.init_process_group('gloo', init_method='file://{tmp_path}/store', rank=0, world_size=1)\n"
            "from megatron_grow.checkpointing import write_checksums\n"
            "write_checksums(sys.argv[1], background=True)\n")  # and exit at once
    subprocess.run([sys.executable, "-c", code, str(d)], check=True, timeout=120)
    saved = json.loads((d / "checksums.0.json").read_text())
    assert set(saved) == {"0_0.distcp", "common.pt", checkpointing.WORLD_KEY} and saved[checkpointing.WORLD_KEY] == 1
    assert len(saved["0_0.distcp"]["xxh3_64"]) == 2 and checkpointing.verify_checksums(str(d)) is None
    (d / "checksums.0.json").write_text(json.dumps(dict(saved, **{checkpointing.WORLD_KEY: 2})))  # rank 1's: lost
    assert checkpointing.verify_checksums(str(d)).startswith(f"{d}/checksums.1.json is missing")
    (d / "checksums.0.json").write_text(json.dumps(saved))

    flipped = bytearray(blob)
    flipped[checkpointing.CHUNK + 1] ^= 1
    (d / "0_0.distcp").write_bytes(bytes(flipped))
    c = checkpointing.CHUNK
    assert checkpointing.verify_checksums(str(d)) == f"{d}/0_0.distcp differs from what was saved (xxh3_64 of " \
        f"bytes {c}..{2 * c})"
    (d / "checksums.0.json").write_text(json.dumps({"0_0.distcp": {  # as saved before 2026-12-02
        "size": len(blob), "crc32": [zlib.crc32(blob[:c]), zlib.crc32(blob[c:])]}}))
    assert "crc32 of bytes" in checkpointing.verify_checksums(str(d))
    (d / "0_0.distcp").write_bytes(blob)
    assert checkpointing.verify_checksums(str(d)) is None
    (d / "0_0.distcp").write_bytes(blob[:10])
    assert checkpointing.verify_checksums(str(d)) == f"{d}/0_0.distcp has 10 bytes, {len(blob)} were saved"


def test_one_writer_per_save_directory(tmp_path):
    """Two jobs started together with the same --save: one trains, the other is refused naming the first
    and the lock file, and nothing of the first's is touched; the lock goes with the job. A lock left by
    a job that is gone (this host, its process ended) is taken over; one of a job on another host is not."""
    ck = tmp_path / "ck"
    flags = [*ARGS, "--train-iters", "6", "--save", str(ck), "--save-interval", "2"]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # (each job under run()'s timeout)
        results = list(pool.map(lambda s: torchrun(1, [*flags, "--seed", str(s)], check=False), (1, 2)))
    ok = [r for r in results if r.returncode == 0]
    refused = [r for r in results if r.returncode != 0]
    assert len(ok) == 1 and len(refused) == 1, [r.stdout[-2000:] for r in results]
    out = refused[0].stdout
    assert "is being written by another job" in out or "already holds a checkpoint" in out, out
    assert sorted(os.listdir(ck)) == [f"iter_000000{i}" for i in (2, 4, 6)] + ["latest_checkpointed_iteration.txt"]
    from megatron_grow import checkpointing

    lock = os.path.join(ck, checkpointing.LOCK)
    with open(lock, "w") as f:  # a live job of this host (this test) writing there: a resume is refused too
        json.dump({"host": socket.gethostname(), "pid": os.getpid(), "slurm_job": None, "since": "now"}, f)
    res = torchrun(1, [*flags, "--train-iters", "8", "--load", str(ck)], check=False)
    assert res.returncode != 0 and f"is being written by another job ({socket.gethostname()} pid {os.getpid()}" \
        in res.stdout and os.path.exists(lock), res.stdout
    assert checkpointing.iterations(str(ck)) == [2, 4, 6]
    os.remove(lock)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with open(lock, "w") as f:  # a job of this host that has ended
        json.dump({"host": socket.gethostname(), "pid": int(gone.stdout), "slurm_job": None, "since": "then"}, f)
    assert checkpointing._claim(str(ck)) is None and checkpointing._read_lock(lock)["pid"] == os.getpid()
    os.remove(lock)
    with open(lock, "w") as f:  # a job elsewhere
        json.dump({"host": "node-17", "pid": 1, "slurm_job": "4242", "since": "then"}, f)
    msg = checkpointing._claim(str(ck))
    assert "being written by another job (node-17 pid 1, Slurm job 4242, since then)" in msg and lock in msg
