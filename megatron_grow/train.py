"""Entry point: ``torchrun --nproc_per_node N -m megatron_grow.train --model llama3 --preset tiny ...``.

A plain ``python -m megatron_grow.train`` runs as a world of one process.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import warnings


def _quiet():
    """megatron-core warns at import about every optional accelerator package it does not find."""
    warnings.filterwarnings("ignore", message=".*(Apex|Transformer Engine|TE|apex).*")
    warnings.filterwarnings("ignore", category=UserWarning, module="megatron")
    warnings.filterwarnings("ignore", category=FutureWarning)
    import logging

    logging.getLogger("megatron").setLevel(logging.ERROR)


class Data:
    """Train / held-out iterators over the configured data source."""

    def __init__(self, cfg, tokenizer, dp_rank: int, dp_size: int):
        from megatron_grow.data.datasets import build_datasets, micro_batches

        self.tokenizer = tokenizer
        self.cfg, self.dp_rank, self.dp_size, self._micro_batches = cfg, dp_rank, dp_size, micro_batches
        n_train = cfg.train_iters * cfg.global_batch_size
        n_valid = cfg.eval_iters * cfg.global_batch_size
        self.train, self.valid, _ = build_datasets(
            None if cfg.mock_data else cfg.data_path, tokenizer,
            cfg.seq_length, cfg.seed, cfg.split, (n_train, n_valid, 0), mock=cfg.mock_data,
            vocab_size=cfg.vocab_size, path_to_cache=cfg.data_cache_path,
        )

    def relayout(self) -> None:
        """After the parallel groups changed (growth): this rank's new DP position."""
        from megatron.core import parallel_state as ps

        self.dp_rank, self.dp_size = ps.get_data_parallel_rank(), ps.get_data_parallel_world_size()

    def train_iterator(self, consumed_samples: int):
        c = self.cfg
        return self._micro_batches(self.train, consumed_samples, c.micro_batch_size, self.dp_rank, self.dp_size)

    def valid_iterator(self):
        c = self.cfg
        return self._micro_batches(self.valid, 0, c.micro_batch_size, self.dp_rank, self.dp_size)


def resolve_data(cfg):
    """Point --data-path demo at the bundled corpus (built on first use) and load the tokenizer."""
    from megatron_grow.data.tokenizer import Tokenizer

    if cfg.mock_data:
        return None
    if cfg.data_path == "demo":
        from megatron_grow.data.corpus import demo_corpus

        cfg.data_path, model = demo_corpus()
        cfg.tokenizer_model = cfg.tokenizer_model or model
    tok = Tokenizer(cfg.tokenizer_model)
    cfg.vocab_size = tok.vocab_size
    return tok


def checkpoint_config(cfg, for_training: bool = True):
    """The config to build for resuming --load: the grown one when the checkpoint is past growth.

    A checkpoint whose depth or family matches neither is refused, saying whether
    tools/expand_checkpoint.py can grow it."""
    from megatron_grow import checkpointing, config

    try:
        it = checkpointing.latest_iteration(cfg.load) if cfg.ckpt_step is None else cfg.ckpt_step
    except ValueError:
        have = checkpointing.iterations(cfg.load)
        raise SystemExit(f"--load {cfg.load}: {os.path.join(cfg.load, checkpointing.TRACKER)} does not hold an "
                         f"iteration number; pick a complete checkpoint with --ckpt-step N (complete ones: "
                         f"{', '.join(map(str, have)) or 'none'})") from None
    if it is None:
        raise SystemExit(f"--load {cfg.load}: no {checkpointing.TRACKER} there; it holds no complete checkpoint")
    if not os.path.isdir(checkpointing.iter_dir(cfg.load, it)):
        have = checkpointing.iterations(cfg.load)
        raise SystemExit(f"--load {cfg.load} --ckpt-step {it}: no complete checkpoint of that iteration there "
                         f"(complete ones: {', '.join(map(str, have)) or 'none'})")
    chosen = cfg.ckpt_step is not None
    it = intact_iteration(cfg, it)
    common = checkpointing.read_common_or_exit(cfg.load, it)
    later = [i for i in checkpointing.iterations(cfg.load) if i > it]
    if chosen and later and cfg.save and os.path.abspath(cfg.save) == os.path.abspath(cfg.load):
        raise SystemExit(f"--ckpt-step {it} with --save {cfg.save} (the --load directory) would overwrite its later "
                         f"checkpoints (iterations {', '.join(map(str, later))}); choose a new --save directory")
    layers, family = common["num_layers"], common["family"]
    if config.growth_requested(cfg) and layers == cfg.grow_to_layers and it >= config.grow_iteration(cfg):
        cfg = config.grown_config(cfg)
    if family != cfg.model or layers != cfg.num_layers:
        fix = (f" Grow it first: python tools/expand_checkpoint.py --load {cfg.load} --save NEW_DIR "
               f"--target-num-layers {cfg.num_layers}, then --load NEW_DIR."
               if family == cfg.model and layers < cfg.num_layers else
               " tools/expand_checkpoint.py cannot fix this (it only adds layers to a model of the same family).")
        raise SystemExit(f"--load {cfg.load}: the checkpoint (iteration {it}) is a {layers}-layer {family} model, "
                         f"but this run builds a {cfg.num_layers}-layer {cfg.model} model.{fix}")
    saved = common["config"].get("optimizer", "adam")
    if saved != cfg.optimizer:  # (first: other optimizer defaults would also change the schedule's weight decay)
        raise SystemExit(f"--load {cfg.load}: the checkpoint holds {saved} optimizer state, but this run uses "
                         f"--optimizer {cfg.optimizer}; resume with --optimizer {saved}")
    shape_problems(cfg, common, it)
    if for_training:  # (tools that only read the weights, such as dump_logits, take any schedule flags)
        schedule_problems(cfg, common, it)
    return dataclasses.replace(cfg, ckpt_step=it)  # the load reads exactly the iteration checked here


def intact_iteration(cfg, it: int) -> int:
    """``it`` if its files match the checksums saved with them; else, with --ckpt-fallback, the newest
    earlier one that does (rank 0 reads the files, every rank gets the answer)."""
    import torch.distributed as dist

    from megatron_grow import checkpointing

    candidates = [it] + ([i for i in reversed(checkpointing.iterations(cfg.load)) if i < it] if cfg.ckpt_fallback else [])
    for i in candidates:
        box = [None]
        if dist.get_rank() == 0:
            box[0] = checkpointing.verify_checksums(checkpointing.iter_dir(cfg.load, i))
        dist.broadcast_object_list(box, src=0)
        if box[0] is None:
            return i
        if not cfg.ckpt_fallback:
            raise SystemExit(f"--load {cfg.load}: the checkpoint of iteration {i} is damaged: {box[0]}. Add "
                             f"--ckpt-fallback to load the newest intact earlier one, or pick one with --ckpt-step N "
                             f"(complete ones: {', '.join(map(str, checkpointing.iterations(cfg.load)))})")
        if dist.get_rank() == 0:
            print(f"--ckpt-fallback: the checkpoint of iteration {i} is damaged ({box[0]}); trying the one before",
                  file=sys.stderr, flush=True)
    raise SystemExit(f"--load {cfg.load}: no intact checkpoint there (every one fails its checksums)")


SHAPE_FLAGS = ("hidden_size", "ffn_hidden_size", "num_attention_heads", "num_query_groups", "kv_channels",
               "vocab_size", "q_lora_rank", "kv_lora_rank", "qk_head_dim", "qk_pos_emb_head_dim", "v_head_dim",
               "num_experts", "moe_ffn_hidden_size", "moe_shared_expert_intermediate_size", "moe_first_dense_layers")


def shape_problems(cfg, common: dict, it: int) -> None:
    """The shapes the checkpoint was saved with against the flags: one message naming every
    difference (instead of megatron's shape-mismatch traceback at load)."""
    saved = common["config"]
    diff = [(k, saved[k], getattr(cfg, k)) for k in SHAPE_FLAGS
            if k in saved and getattr(cfg, k) is not None and saved[k] != getattr(cfg, k)]
    if diff:
        raise SystemExit(f"--load {cfg.load}: the checkpoint (iteration {it}) was saved with "
                         + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v, _ in diff) + "; this run has "
                         + ", ".join(f"--{k.replace('_', '-')} {w}" for k, _, w in diff)
                         + ". Pass the checkpoint's values (only depth can change, by growth)")


def schedule_problems(cfg, common: dict, it: int) -> None:
    """Resume semantics as in Megatron: the checkpoint's LR schedule continues only when the flags
    give the same one; a differing one is refused, naming both values, unless
    --override-opt-param-scheduler applies the flags' schedule from the checkpoint's iteration on."""
    from megatron_grow import config

    if cfg.train_iters < it:
        raise SystemExit(f"--train-iters {cfg.train_iters} is below the checkpoint's iteration {it} "
                         f"(--load {cfg.load}): nothing would be trained. To train further give --train-iters > {it} "
                         f"and --override-opt-param-scheduler (the schedule is then recomputed for the new length)")
    fields = {f.name for f in dataclasses.fields(config.RunConfig)}
    saved_cfg = config.RunConfig(**{k: v for k, v in common["config"].items() if k in fields})
    old, new = saved_cfg.lr_schedule(), cfg.lr_schedule()
    diff = {k: (old.get(k), v) for k, v in new.items() if old.get(k) != v}
    if not diff:
        return
    what = "; ".join(f"--{k.replace('_', '-')} {v} (checkpoint: {o})" for k, (o, v) in diff.items())
    if not cfg.override_opt_param_scheduler:
        raise SystemExit(f"--load {cfg.load}: the LR schedule flags differ from the checkpoint's (iteration {it}): "
                         f"{what}. Pass the checkpoint's values to continue its schedule, or add "
                         f"--override-opt-param-scheduler to apply the flags' schedule from iteration {it} on")
    if int(os.environ.get("RANK", 0)) == 0:
        print(f"--override-opt-param-scheduler: the LR schedule from the flags replaces the checkpoint's from "
              f"iteration {it} on: {what}", file=sys.stderr, flush=True)


def setup(argv=None, for_training: bool = True):
    """Config -> platform -> data -> model/optimizer (-> checkpoint). Returns (cfg, state, data, device).
    ``for_training`` False (tools that only read a checkpoint's weights): its LR schedule is not compared."""
    from megatron.core import parallel_state as ps

    from megatron_grow import config, platform, training

    cfg = config.parse_args(argv)
    device = platform.resolve_device(cfg.device)
    world = int(os.environ.get("WORLD_SIZE", 1))
    try:  # every problem, before any work, printed once
        cfg = config.finalize(cfg, world, device, device == "cuda" and platform.te_available())
    except config.ConfigError as e:
        if int(os.environ.get("RANK", 0)) == 0:
            print(e.code, file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    _, _, dev = platform.init_distributed(device, cfg.distributed_timeout_minutes)
    if cfg.load:
        cfg = checkpoint_config(cfg, for_training)
        if not for_training:
            cfg = dataclasses.replace(cfg, override_opt_param_scheduler=True)
    platform.init_model_parallel(cfg.tensor_model_parallel_size, cfg.pipeline_model_parallel_size, cfg.seed,
                                 cfg.expert_model_parallel_size)
    tokenizer = resolve_data(cfg)
    data = Data(cfg, tokenizer, ps.get_data_parallel_rank(), ps.get_data_parallel_world_size())
    state = training.build_state(cfg, dev)
    if cfg.load:
        training.load_checkpoint(cfg, state)
    return cfg, state, data, dev


EXIT_DIVERGED = 3  # exit status when training stopped on skipped (non-finite or spiking) updates
EXIT_STOPPED = 4  # stopped early by a signal or --exit-duration-in-mins, after saving: relaunch with --load
EXIT_TIMEOUT = 5  # a collective waited longer than --distributed-timeout-minutes (a frozen or lost rank)


def main(argv=None) -> dict:
    _quiet()
    import torch.distributed as dist

    from megatron_grow import platform, training

    cfg, state, data, dev = setup(argv)
    t0 = time.time()
    try:
        summary = training.train(cfg, state, data, dev)
    except (training.Diverged, training.Stopped) as e:  # every rank stops at the same iteration
        if dist.get_rank() == 0:
            print(f"\nstopped: {e}", file=sys.stderr, flush=True)
        platform.shutdown()
        raise SystemExit(EXIT_STOPPED if isinstance(e, training.Stopped) else EXIT_DIVERGED)
    except RuntimeError as e:  # gloo's words; NCCL's watchdog ends the process itself
        if "Timed out waiting" not in str(e):
            raise
        print(f"\nrank {dist.get_rank()} stopped: a collective waited longer than --distributed-timeout-minutes "
              f"{cfg.distributed_timeout_minutes:g}, so another rank is frozen or gone ({e}). Relaunch with "
              f"--load {cfg.save or 'DIR'} to continue from the last checkpoint.", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_TIMEOUT) from None
    cfg, state = summary.pop("cfg"), summary.pop("state")
    if dist.get_rank() == 0:
        tok_s = summary["tokens"] / max(summary["seconds"], 1e-9)
        fmt = lambda x: "n/a" if x is None else f"{x:.4f}"  # noqa: E731
        print(f"\ndone: {cfg.model} {cfg.num_layers} layers, iteration {state.iteration} in "
              f"{time.time() - t0:.1f}s ({tok_s:,.0f} tokens/s) | train loss {fmt(summary['first_loss'])} -> "
              f"{fmt(summary['last_loss'])} | val loss {fmt(summary['val_loss'])}"
              + (f" | checkpoint {cfg.save}" if cfg.save else "")
              + (f" | metrics {cfg.metrics_file}" if cfg.metrics_file else ""), flush=True)
    platform.shutdown()
    return summary


if __name__ == "__main__":
    main()  # a ConfigError (SystemExit) prints its list of problems and exits 1
