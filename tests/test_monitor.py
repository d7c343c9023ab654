"""Monitoring as Megatron-LM users have it, on one short in-process run (a tiny LLaMA3 grown 1 -> 2 layers):
W&B (offline: read back from its own .wandb file) and TensorBoard (read back with tensorboard's
EventAccumulator) hold the metrics file's records under train/, eval/ and growth/; --log-throughput;
torch.profiler traces exactly the asked iterations; --manual-gc collects only where Megatron-LM does;
and each loop flag that would do nothing is refused."""

import gc
import glob
import gzip
import json
import os
import struct
import sys
import zlib

import pytest

from conftest import TINY, cfg_for, read_metrics
from megatron_grow.config import ConfigError, parse_args

ITERS, TAU, EVAL, GC_EVERY, PROFILE = 8, 4, 4, 3, (2, 4)  # profiled: iterations 3 and 4


def wandb_records(path: str) -> list:
    """The records of a .wandb file (W&B's transaction log: LevelDB's log format, 32 KiB blocks of
    CRC-checked chunks holding wandb_internal_pb2.Record protobufs)."""
    from wandb.proto import wandb_internal_pb2 as pb

    with open(path, "rb") as f:
        data = f.read()
    assert data[:7] == b":W&B" + struct.pack("<HB", 0xBEE1, 0)
    out, buf, pos, block = [], b"", 7, 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        crc, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            break
        chunk = data[pos + 7:pos + 7 + n]
        assert zlib.crc32(bytes([kind]) + chunk) == crc, f"{path}: bad checksum at {pos}"
        pos, buf = pos + 7 + n, buf + chunk
        if kind in (1, 4):  # full, or the last chunk of a record
            rec = pb.Record()
            rec.ParseFromString(buf)
            out.append(rec)
            buf = b""
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One run with every monitor on; returns (tmp dir, the collections made inside the loop: (caller file,
    caller, generation, iteration)), and whether gc was enabled again after it)."""
    from megatron_grow import train

    d = tmp_path_factory.mktemp("monitor")
    collections = []

    def seen(phase, info):
        if phase != "start":
            return
        f, trainer = sys._getframe(1), None
        caller = (os.path.basename(f.f_code.co_filename), f.f_code.co_name)
        while f is not None and trainer is None:
            if f.f_code.co_name == "run" and type(f.f_locals.get("self")).__name__ == "Trainer":
                trainer = f.f_locals["self"]
            f = f.f_back
        if trainer is not None:
            collections.append((*caller, info["generation"], trainer.state.iteration))

    argv = ["--model", "llama3", *TINY, "--num-layers", "1", "--mock-data", "--vocab-size", "500",
            "--micro-batch-size", "2", "--global-batch-size", "2", "--train-iters", str(ITERS),
            "--lr-warmup-iters", "1", "--eval-interval", str(EVAL), "--eval-iters", "1",
            "--grow-to-layers", "2", "--grow-at-iter", str(TAU), "--grow-init", "copy_zeroL",
            "--metrics-file", str(d / "metrics.jsonl"), "--tensorboard-dir", str(d / "tb"),
            "--wandb-project", "grow", "--wandb-exp-name", "tiny", "--wandb-save-dir", str(d / "wb"),
            "--log-throughput", "--profile", "--use-pytorch-profiler", "--profile-step-start", str(PROFILE[0]),
            "--profile-step-end", str(PROFILE[1]), "--profile-ranks", "0",
            "--manual-gc", "--manual-gc-interval", str(GC_EVERY)]
    with pytest.MonkeyPatch.context() as mp:
        for var, sub in (("WANDB_CONFIG_DIR", "wbconf"), ("WANDB_CACHE_DIR", "wbcache"), ("WANDB_DATA_DIR", "wbdata")):
            mp.setenv(var, str(d / sub))
        mp.setenv("WANDB_MODE", "offline")
        gc.callbacks.append(seen)
        try:
            train.main(argv)
        finally:
            gc.callbacks.remove(seen)
    return d, collections, gc.isenabled()


def expected_scalars(records: list[dict]) -> dict[str, dict[int, float]]:
    """tag -> {iteration: value}: each record's numbers (iter aside; not bools, strings, lists, nulls) under
    growth/ (the growth event), eval/ (held-out loss) or train/ (an iteration)."""
    out = {}
    for r in records:
        group = "growth" if r.get("event") == "grow" else "eval" if "val_loss" in r else "train"
        for k, v in r.items():
            if k != "iter" and type(v) in (int, float):
                out.setdefault(f"{group}/{k}", {})[r["iter"]] = v
    return out


def test_tensorboard_and_wandb_hold_the_metrics_files_records_grouped(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    d = trained[0]
    records = read_metrics(d / "metrics.jsonl")
    want = expected_scalars(records)
    assert {t.split("/")[0] for t in want} == {"train", "eval", "growth"}
    assert sorted(want["train/lm_loss"]) == list(range(1, ITERS + 1)) and sorted(want["eval/val_loss"]) == [4, 8]
    assert list(want["growth/to_layers"].items()) == [(TAU, 2)] and "growth/loss_before" in want
    # TensorBoard (float32 values)
    acc = EventAccumulator(str(d / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    tb = {t: {e.step: e.value for e in acc.Scalars(t)} for t in acc.Tags()["scalars"]}
    assert tb.keys() == want.keys()
    for tag, values in want.items():
        assert tb[tag] == pytest.approx(values, rel=1e-6), tag
    # W&B, offline: its transaction log under --wandb-save-dir
    files = glob.glob(str(d / "wb" / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert len(files) == 1, files
    records_wb = wandb_records(files[0])
    run = next(r.run for r in records_wb if r.WhichOneof("record_type") == "run")
    config = {i.key: json.loads(i.value_json) for i in run.config.update}
    assert (run.project, run.display_name) == ("grow", "tiny")
    assert (config["train_iters"], config["grow_to_layers"], config["wandb_project"]) == (ITERS, 2, "grow")
    wb = {}
    for r in records_wb:
        if r.WhichOneof("record_type") == "history":
            for i in r.history.item:
                key = i.key or "/".join(i.nested_key)  # (wandb writes some keys as their parts)
                if not key.startswith("_"):
                    wb.setdefault(key, {})[r.history.step.num] = json.loads(i.value_json)
    assert wb == want


def test_log_throughput_is_megatron_lms_tflops_per_gpu(trained):
    steps = [r for r in read_metrics(trained[0] / "metrics.jsonl") if "lm_loss" in r]
    assert len(steps) == ITERS
    for r in steps:  # one process: the iteration's model FLOPs (Megatron-LM's count, test_flops.py) per second
        assert r["tflops_per_gpu"] == pytest.approx(r["flops"] / r["step_time_s"] / 1e12, rel=1e-9)


def test_pytorch_profiler_traces_exactly_the_asked_iterations(trained):
    d = trained[0]
    traces = glob.glob(str(d / "tb" / "torch_profile" / "*"))
    assert [os.path.basename(t) for t in traces] == ["rank0-iters3-4.json.gz"]
    with gzip.open(traces[0]) as f:
        events = json.load(f)["traceEvents"]
    steps = sorted(e["name"] for e in events if e.get("name", "").startswith("ProfilerStep#"))
    assert steps == ["ProfilerStep#3", "ProfilerStep#4"]
    assert any(e.get("name") in ("aten::mm", "aten::addmm", "aten::matmul") for e in events)  # the model's work
    # a second run with the same directory and steps would overwrite it: refused
    with pytest.raises(ConfigError, match="rank0-iters3-4.json.gz exists"):
        cfg_for(profile=True, use_pytorch_profiler=True, profile_step_start=2, profile_step_end=4, train_iters=8,
                tensorboard_dir=d / "tb")


def test_manual_gc_collects_only_at_the_interval_and_around_evaluations(trained):
    _, collections, enabled_after = trained
    ours = [c[1:] for c in collections if c[0] == "monitor.py"]
    assert ours == [("start", 2, 0), ("after_iteration", 2, 3), ("before_eval", 2, 4), ("after_eval", 0, 4),
                    ("after_iteration", 2, 6), ("before_eval", 2, 8), ("after_eval", 0, 8)]
    # nothing else collected inside the loop (the automatic collector was off), but growth's own collection
    assert [c for c in collections if c[0] != "monitor.py"] == [("online.py", "_free", 2, TAU)]
    assert enabled_after  # and on again after the run


def test_loop_flags_that_would_do_nothing_are_refused(monkeypatch):
    assert parse_args(["--profile-ranks", "0", "1"]).profile_ranks == [0, 1]
    cases = {
        "--profile without --use-pytorch-profiler marks an Nsight Systems capture range": dict(profile=True),
        "--use-pytorch-profiler does nothing without --profile": dict(use_pytorch_profiler=True),
        "--use-pytorch-profiler writes its trace to --tensorboard-dir": dict(profile=True, use_pytorch_profiler=True),
        "--profile-ranks 3: no such rank (ranks 0..0)": dict(profile=True, profile_ranks=3),
        "--profile-step-start 12: the run ends at --train-iters 10": dict(
            profile=True, train_iters=10, profile_step_start=12, profile_step_end=14),
        "need 0 <= start < end": dict(profile=True, profile_step_start=5, profile_step_end=5),
        "--manual-gc-interval does nothing without --manual-gc": dict(manual_gc_interval=5),
        "--empty-unused-memory-level 3 must be 0, 1 or 2": dict(empty_unused_memory_level=3),
        "--wandb-exp-name does nothing without --wandb-project": dict(wandb_exp_name="x"),
    }
    for message, flags in cases.items():
        with pytest.raises(ConfigError) as e:
            cfg_for(**flags)
        assert message in str(e.value), (flags, str(e.value))
    monkeypatch.setitem(sys.modules, "wandb", None)  # as on a machine without it
    with pytest.raises(ConfigError, match=r"--wandb-project needs the wandb package: pip install wandb"):
        cfg_for(wandb_project="p")
