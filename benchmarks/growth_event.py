"""The growth event's seconds beside one save + load of the grown state, and the init it pays.

    python benchmarks/growth_event.py [--hidden-size 512 --target-layers 12 --grow-init random]

Three torchrun jobs of 2 processes each (CPU/gloo, the trainer's own setup, LLaMA3 on mock data,
fp32), one per case: DP2 -> TP2 (a layout change: the event goes through a checkpoint), DP2 -> DP2 (the
same layout: the event re-lays the state in memory) and DP2 -> DP2 forced through the checkpoint
(MEGATRON_GROW_GROW_VIA_CHECKPOINT=1, what the same-layout event cost before). In each, a 1-layer model
on DP2 takes two training steps, then the trainer's growth event (megatron_grow/growth/online.py) grows
it to --target-layers, timed by phase through timing wrappers around the functions the event calls
(nothing else changes: same calls, same order). The grown model takes one step; then one save and one
load of the grown state (model + optimizer, checkpointing.save / load) at its layout, as a resume
would. Last (DP2 -> TP2 job), the grown model's init at TP2 two ways: the tiled init and the scheme
before it (megatron's draw of the local shard, then the full tensor drawn from the name's generator and
sliced), elements drawn per rank and seconds. From the measured rates of the TP2 case, an estimate for
the 7B example (examples/pretrain_gpt2_grow.sh with PRESET=7b: 0 -> 60 layers, TP8 x PP4 on 32 GPUs)
and for LLaMA3-8B 1 -> 32 layers at TP2 on 8 GPUs. Results: benchmarks/results/growth_event.json / .md.
Target (issues 17, 24): the growth event below one save + load of the grown state.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.launch import RESULTS, run_worker, write  # noqa: E402

PHASES = ["evals", "save source", "parallel groups", "build deep model", "init deep model", "load_grown",
          "copy state"]
# (label, --grow-tensor-model-parallel-size, environment)
CASES = [("DP2 -> TP2", 2, {}), ("DP2 -> DP2", 1, {}),
         ("DP2 -> DP2 forced", 1, {"MEGATRON_GROW_GROW_VIA_CHECKPOINT": "1"})]


def _du(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def _old_init(model, seed: int, std: float, num_layers: int) -> int:
    """The init before the tiled one, on the 2-D weights: megatron's init method drew the local shard
    (perform_initialization), then each full tensor was drawn from the name's generator and sliced.
    Returns the elements drawn."""
    import math

    import torch

    from megatron_grow.models import init
    from megatron_grow.models.names import is_residual_output

    names, gated, n = init.global_names(model), model.config.gated_linear_unit, 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim != 2:
                continue
            s = std / math.sqrt(2.0 * num_layers) if is_residual_output(names[name]) else std
            p.normal_(0.0, s)
            tp, rank = init.tp_size_rank(name)
            gen = init._generator(seed, names[name], "cpu")
            full = torch.empty(init.full_shape(p, tp)).normal_(0.0, s, generator=gen)
            if getattr(p, "tensor_model_parallel", False) and tp > 1:
                d = p.partition_dim
                halves = full.chunk(2, dim=d) if gated and "linear_fc1" in name else [full]
                full = torch.cat([h.chunk(tp, dim=d)[rank] for h in halves], dim=d)
            p.copy_(full)
            n += p.numel() + math.prod(init.full_shape(p, tp))
    return n


def worker(args) -> None:
    import torch.distributed as dist

    from megatron_grow import checkpointing, platform, runstate, training
    from megatron_grow.growth import online
    from megatron_grow.models import init
    from megatron_grow.train import _quiet, setup

    _quiet()
    h = args.hidden_size
    cfg, state, data, dev = setup([
        "--model", "llama3", "--preset", "tiny", "--hidden-size", str(h), "--ffn-hidden-size", str(3 * h),
        "--num-attention-heads", str(h // 64), "--num-query-groups", str(h // 128), "--num-layers", "1",
        "--mock-data", "--vocab-size", str(args.vocab_size), "--seq-length", "128", "--micro-batch-size", "2",
        "--global-batch-size", "4", "--train-iters", "10", "--eval-iters", "1", "--no-progress",
        "--grow-at-iter", "2", "--grow-to-layers", str(args.target_layers), "--grow-init", args.grow_init,
        "--grow-tensor-model-parallel-size", str(args.grow_tp), "--save", os.path.join(args.dir, "ckpt")])
    batches = data.train_iterator(0)
    for _ in range(2):
        training.train_step(cfg, state, batches, dev)
        state.iteration += 1
        state.consumed_samples += cfg.global_batch_size
    # a periodic save before tau, as --save-interval makes: the process's first save also starts the
    # checkpoint writer's helper process (seconds), which a real run has paid before it grows
    t0 = time.perf_counter()
    checkpointing.save(cfg.save, state.iteration, state.module, state.optimizer, state.scheduler,
                       runstate.common_state(cfg, state))
    first_save_s = time.perf_counter() - t0
    checkpointing.wait_for_checksums()

    seconds = dict.fromkeys(PHASES, 0.0)

    def timed(label, fn):
        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                seconds[label] += time.perf_counter() - t0
        return wrapper

    patches = [(checkpointing, "save", "save source"), (platform, "init_model_parallel", "parallel groups"),
               (runstate, "build_state", "build deep model"), (init, "init_weights", "init deep model"),
               (online, "load_grown", "load_grown"), (online, "copy_grown", "copy state")]
    saved = [(mod, attr, getattr(mod, attr)) for mod, attr, _ in patches]
    for mod, attr, label in patches:
        setattr(mod, attr, timed(label, getattr(mod, attr)))
    evaluate = timed("evals", lambda c, s: training.evaluate(c, s, data.valid_iterator, dev))
    mon = type("Mon", (), {"print": staticmethod(lambda *a: None)})()
    dist.barrier()
    cfg_t, new, event = online.grow(cfg, state, data, dev, mon, evaluate)
    for mod, attr, fn in saved:
        setattr(mod, attr, fn)
    seconds["build deep model"] -= seconds["init deep model"]  # (build_state includes the init)
    seconds["other"] = event["seconds"] - sum(seconds.values())
    source_bytes = _du(os.path.join(args.dir, "ckpt", "grow_source"))  # (0: grown in memory)
    training.train_step(cfg_t, new, data.train_iterator(new.consumed_samples), dev)
    new.iteration += 1

    checkpointing.wait_for_checksums()  # (the source's, in the background: not in what follows)
    dist.barrier()
    root = os.path.join(args.dir, "grown")
    t0 = time.perf_counter()
    path = checkpointing.save(root, new.iteration, new.module, new.optimizer, new.scheduler,
                              runstate.common_state(cfg_t, new))
    save_s = time.perf_counter() - t0
    checkpointing.wait_for_checksums()
    dist.barrier()
    t0 = time.perf_counter()
    checkpointing.load(root, new.module, new.optimizer, new.scheduler, layout=cfg_t.layout)
    load_s = time.perf_counter() - t0
    grown_bytes = _du(path)

    mine = {"rank": dist.get_rank(), "first_save_s": first_save_s, "event_s": event["seconds"], "phases": seconds,
            "save_s": save_s, "load_s": load_s, "init": _compare_inits(cfg, cfg_t, new) if args.grow_tp > 1 else None}
    every = [None] * dist.get_world_size()
    dist.all_gather_object(every, mine)
    if dist.get_rank() == 0:
        from megatron_grow.flops import param_count

        with open(args.out, "w") as f:
            json.dump({"source_params": param_count(cfg), "grown_params": param_count(cfg_t), "via": event["via"],
                       "source_bytes": source_bytes, "grown_bytes": grown_bytes, "loss_before": event["loss_before"],
                       "loss_after": event["loss_after"], "ranks": every}, f)
    platform.shutdown()


def _compare_inits(cfg, cfg_t, new) -> dict:
    """The grown model's init, tiled and as before (the faster of two each: the cores are shared)."""
    import torch.distributed as dist

    from megatron_grow.models import init

    model = new.module
    drawn = [0]
    tile = init._tile

    def counted(*a):
        t = tile(*a)
        drawn[0] += t.numel()
        return t

    tiled_s, old_s = [], []
    for _ in range(2):  # (the faster of two: the cores are shared)
        init._tile, drawn[0] = counted, 0
        dist.barrier()
        t0 = time.perf_counter()
        init.init_weights(model, cfg.seed, cfg.init_method_std, cfg_t.num_layers)
        tiled_s.append(time.perf_counter() - t0)
        init._tile = tile
        t0 = time.perf_counter()
        old_elements = _old_init(model, cfg.seed, cfg.init_method_std, cfg_t.num_layers)
        old_s.append(time.perf_counter() - t0)
    tiled_s, old_s = min(tiled_s), min(old_s)
    local = sum(p.numel() for p in model.parameters() if p.ndim == 2)
    return {"tiled_elements": drawn[0], "tiled_s": tiled_s, "old_elements": old_elements, "old_s": old_s,
            "local_elements": local}


def _cfg(model: str, preset: str, layers: int):
    from megatron_grow import config
    from megatron_grow.finalize import finalize

    return finalize(config.parse_args(["--model", model, "--preset", preset, "--mock-data", "--device", "cpu",
                                       "--num-layers", str(layers)]), 1, "cpu")


def estimate(m: dict, model: str, preset: str, src: int, dst: int, tp: int, pp: int, world: int) -> dict:
    """The event and one save + load of the grown state for a (model, preset) grown src -> dst layers onto
    TP x PP over ``world`` ranks (the source on pure DP), at this run's per-rank rates."""
    from megatron_grow.flops import param_count

    a, b = param_count(_cfg(model, preset, src)), param_count(_cfg(model, preset, dst))
    per_param = m["grown_bytes"] / m["grown_params"]  # model + optimizer bytes per parameter (fp32 Adam)
    # every rank writes an equal share (megatron's fully parallel save spreads a DP-replicated tensor over
    # its replicas): the source and the grown state each through all ``world`` ranks; a load reads each
    # shard on every rank that holds it (no replica spreading)
    save_rate = m["grown_bytes"] / m["world"] / m["save_s"]  # bytes per second per writing rank
    load_rate = m["grown_bytes"] / m["tp"] / m["load_s"]  # bytes per second per reading rank (no replica reads)
    draw_rate = m["tiled_elements"] / m["init_s"]  # elements per second per rank, in the event (fresh memory)
    build_rate = m["grown_params"] / m["tp"] / m["build_s"]  # parameters per second per rank
    e = {"model": f"{model} {preset}", "from_layers": src, "to_layers": dst,
         "layout": f"TP{tp} x PP{pp}, {world} ranks", "source_params": a,
         "grown_params": b, "grown_bytes": b * per_param}
    e["save source"] = a * per_param / world / save_rate
    e["parallel groups"] = m["groups_s"]
    e["build deep model"] = b / (tp * pp) / build_rate
    e["init deep model"] = b / (tp * pp) / draw_rate
    e["init deep model, before"] = b / pp * (1 + 1 / tp) / draw_rate / m["old_rate_ratio"]
    e["load_grown"] = a * per_param / (tp * pp) / load_rate  # what the source gives each grown rank
    e["event (without evals)"] = sum(e[k] for k in ("save source", "parallel groups", "build deep model",
                                                   "init deep model", "load_grown"))
    e["save + load grown"] = b * per_param * (1 / (world * save_rate) + 1 / (tp * pp * load_rate))
    return e


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden-size", type=int, default=512)
    ap.add_argument("--target-layers", type=int, default=12)
    ap.add_argument("--vocab-size", type=int, default=32000)
    ap.add_argument("--grow-init", default="random")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--grow-tp", type=int, default=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)
    shape = ["--hidden-size", str(args.hidden_size), "--target-layers", str(args.target_layers),
             "--vocab-size", str(args.vocab_size), "--grow-init", args.grow_init]
    runs, t0 = {}, time.time()
    for label, tp, env in CASES:
        with tempfile.TemporaryDirectory() as d:
            res = run_worker(__file__, 2, ["--dir", d, "--grow-tp", str(tp), *shape], env=env)
        ranks = res["ranks"]
        slowest = lambda f: max(f(r) for r in ranks)  # noqa: E731,B023  (a collective phase ends with its slowest rank)
        r = runs[label] = {"result": res, "via": res["via"], "event_s": slowest(lambda r: r["event_s"]),
                           "phases": {k: slowest(lambda r, k=k: r["phases"][k]) for k in [*PHASES, "other"]},
                           "save_s": slowest(lambda r: r["save_s"]), "load_s": slowest(lambda r: r["load_s"]),
                           "first_save_s": slowest(lambda r: r["first_save_s"])}
        r["save_load_s"] = r["save_s"] + r["load_s"]
        if tp > 1:
            init = {k: slowest(lambda r, k=k: r["init"][k]) for k in ranks[0]["init"]}
    wall = time.time() - t0
    tp2 = runs[CASES[0][0]]
    res, phases = tp2["result"], tp2["phases"]
    m = {"tp": 2, "world": 2, "grown_params": res["grown_params"], "grown_bytes": res["grown_bytes"],
         "save_s": tp2["save_s"], "load_s": tp2["load_s"],
         "tiled_elements": init["tiled_elements"], "init_s": phases["init deep model"],
         "groups_s": phases["parallel groups"],
         "build_s": phases["build deep model"],
         # the old scheme drew local + full elements; its rate per element, relative to the tiled draw's
         "old_rate_ratio": (init["old_elements"] / init["old_s"]) / (init["tiled_elements"] / init["tiled_s"])}
    est = [estimate(m, "gpt2", "7b", 0, 60, 8, 4, 32), estimate(m, "llama3", "8b", 1, 32, 2, 1, 8)]
    data = {"meta": {**vars(args), "wall_s": wall, "cores": os.cpu_count()}, "runs": runs, "init": init,
            "estimates": est}
    labels = list(runs)
    md = ["# The growth event vs one save + load of the grown state", "",
          f"LLaMA3 h{args.hidden_size}, vocab {args.vocab_size}, 1 -> {args.target_layers} layers "
          f"({res['source_params'] / 1e6:.1f}M -> {res['grown_params'] / 1e6:.1f}M parameters), `--grow-init "
          f"{args.grow_init}`, fp32 AdamW, CPU/gloo, 2 processes on {os.cpu_count()} shared cores, one job per "
          f"column ({wall:.0f} s in all). Seconds of the slowest rank. Checkpoints: source "
          f"{res['source_bytes'] / 1e6:.0f} MB, grown {res['grown_bytes'] / 1e6:.0f} MB (model + optimizer, "
          "either layout). A periodic save of the source before tau took "
          f"{max(r['first_save_s'] for r in runs.values()):.1f} s at most (a process's first save starts the "
          "checkpoint writer's helper process), so the event's save is not the first.", "",
          "| | " + " | ".join(f"{k} ({runs[k]['via']})" for k in labels) + " |",
          "|---|" + "---:|" * len(labels)]
    row = lambda name, f: md.append(f"| {name} | " + " | ".join(f"{f(runs[k]):.2f}" for k in labels) + " |")  # noqa: E731
    for k in [*PHASES, "other"]:
        row(k, lambda r, k=k: r["phases"][k])
    row("**event**", lambda r: r["event_s"])
    row("save of the grown state", lambda r: r["save_s"])
    row("load of the grown state", lambda r: r["load_s"])
    row("**save + load**", lambda r: r["save_load_s"])
    row("event / (save + load)", lambda r: r["event_s"] / r["save_load_s"])
    row("the same without the evaluations", lambda r: (r["event_s"] - r["phases"]["evals"]) / r["save_load_s"])
    md += ["", "Target (issues 17, 24): the event below one save + load of the grown state (a ratio below 1). "
           "`evals`: the held-out loss before and after growth (after: not with `--grow-init zero` / "
           "`copy_zeroL`, which keep the function).", "",
           "Init of the grown model at TP2, per rank (largest):", "",
           "| init | elements drawn | of the rank's own elements | s |", "|---|---:|---:|---:|",
           f"| tiled (now) | {init['tiled_elements'] / 1e6:.1f}M | "
           f"{init['tiled_elements'] / init['local_elements']:.2f} | {init['tiled_s']:.2f} |",
           f"| before: megatron's local draw + the full tensor, sliced | {init['old_elements'] / 1e6:.1f}M | "
           f"{init['old_elements'] / init['local_elements']:.2f} | {init['old_s']:.2f} |", "",
           "Estimate at the DP2 -> TP2 run's per-rank rates (assumptions in docs/results.md):", "",
           "| model | layout | grown params | grown state GB | save source | build | init (before) | load_grown "
           "| event w/o evals | save + load grown |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for e in est:
        md.append(f"| {e['model']} {e['from_layers']} -> {e['to_layers']} | {e['layout']} | "
                  f"{e['grown_params'] / 1e9:.2f}B | {e['grown_bytes'] / 1e9:.0f} | {e['save source']:.0f} | "
                  f"{e['build deep model']:.0f} | {e['init deep model']:.0f} ({e['init deep model, before']:.0f}) | "
                  f"{e['load_grown']:.0f} | {e['event (without evals)']:.0f} | {e['save + load grown']:.0f} |")
    write(os.path.join(RESULTS, "growth_event"), data, "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
