"""Entry point: ``torchrun --nproc_per_node N -m megatron_grow.train --model llama3 --preset tiny ...``.

A plain ``python -m megatron_grow.train`` runs as a world of one process.
"""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def user_errors_exit():
    """For entry points: bad flags (ConfigError, printed once by rank 0) and an unusable checkpoint
    (CheckpointError, printed by each rank that meets it) become their message and exit status 1."""
    from megatron_grow.checkpointing import CheckpointError
    from megatron_grow.config import ConfigError

    try:
        yield
    except (ConfigError, CheckpointError) as e:
        report(e)
        raise SystemExit(1) from None


def with_variable_names(message: str) -> str:
    """Each flag of ``message`` that a launch script set from an environment variable
    (MEGATRON_GROW_FLAG_NAMES="--flag=VAR ...", examples/pretrain_grow.sh) followed by that variable."""
    import re

    for pair in os.environ.get("MEGATRON_GROW_FLAG_NAMES", "").split():
        flag, _, var = pair.partition("=")
        message = re.sub(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", f"{flag} (${var})", message)
    return message


def report(e: Exception) -> None:
    """A user's error, once and last on the screen: under torchrun rank 0 hands it to torchrun's error
    file, whose failure summary (printed when the job ends) shows it as the root cause, and the other
    ranks wait a moment so that rank 0's failure is the first torchrun sees; otherwise it is printed."""
    import json

    from megatron_grow.checkpointing import CheckpointError

    e = CheckpointError(with_variable_names(str(e))) if isinstance(e, CheckpointError) else type(e)(
        [with_variable_names(p) for p in e.problems])
    rank, error_file = int(os.environ.get("RANK", 0)), os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not error_file:
        if isinstance(e, CheckpointError) or rank == 0:  # (each rank that meets a checkpoint's problem)
            print(e, file=sys.stderr, flush=True)
        return
    if rank == 0:
        with open(error_file, "w") as f:
            json.dump({"message": {"message": str(e), "extraInfo": {"py_callstack": str(e),
                                                                     "timestamp": str(int(time.time()))}}}, f)
    else:
        time.sleep(3)


def setup(argv=None, for_training: bool = True):
    """Config -> platform -> data -> model/optimizer (-> checkpoint). Returns (cfg, state, data, device).
    ``for_training`` False (tools that only read a checkpoint's weights): its LR schedule is not compared."""
    from megatron.core import parallel_state as ps

    from megatron_grow import checkpointing, config, platform, runstate
    from megatron_grow.data import Data, resolve_data_flags
    from megatron_grow.finalize import finalize

    cfg = config.parse_args(argv)
    device = platform.resolve_device(cfg.device)
    resolve_data_flags(cfg)
    cfg = finalize(cfg, int(os.environ.get("WORLD_SIZE", 1)), device,
                   device == "cuda" and platform.te_available())  # every problem, before any work
    _, _, dev = platform.init_distributed(device, cfg.distributed_timeout_minutes)
    if cfg.save and for_training:
        checkpointing.claim_save_dir(cfg.save)
    if cfg.load:
        cfg = checkpointing.resume_config(cfg, for_training)
        if not for_training:
            cfg = dataclasses.replace(cfg, override_opt_param_scheduler=True)
    platform.init_model_parallel(cfg.tensor_model_parallel_size, cfg.pipeline_model_parallel_size, cfg.seed,
                                 cfg.expert_model_parallel_size)
    data = Data(cfg, ps.get_data_parallel_rank(), ps.get_data_parallel_world_size())
    state = runstate.build_state(cfg, dev)
    if cfg.load:
        runstate.load_checkpoint(cfg, state)
    return cfg, state, data, dev


EXIT_DIVERGED = 3  # exit status when training stopped on skipped (non-finite or spiking) updates
EXIT_STOPPED = 4  # stopped early by a signal or --exit-duration-in-mins, after saving: relaunch with --load
EXIT_TIMEOUT = 5  # a collective failed: it waited longer than --distributed-timeout-minutes, or a rank is gone


def main(argv=None):
    _quiet()
    import torch.distributed as dist

    from megatron_grow import checkpointing, platform, training

    with user_errors_exit():
        cfg, state, data, dev = setup(argv)
    t0 = time.time()
    try:
        with user_errors_exit():
            r = training.train(cfg, state, data, dev)
    except (training.Diverged, training.Stopped) as e:  # every rank stops at the same iteration
        if dist.get_rank() == 0:
            print(f"\nstopped: {e}", file=sys.stderr, flush=True)
        checkpointing.wait_for_checksums()
        platform.shutdown()
        raise SystemExit(EXIT_STOPPED if isinstance(e, training.Stopped) else EXIT_DIVERGED) from None
    except RuntimeError as e:  # gloo's words; NCCL's watchdog ends the process itself
        if "Timed out waiting" in str(e):
            why = (f"a collective waited longer than --distributed-timeout-minutes "
                   f"{cfg.distributed_timeout_minutes:g}, so another rank is frozen or gone ({e})")
        elif any(w in str(e) for w in ("Connection closed by peer", "Connection reset by peer", "Broken pipe")):
            why = f"another rank is gone (killed or crashed): its connection closed during a collective ({e})"
        else:
            raise
        print(f"\nrank {dist.get_rank()} stopped: {why}. A save it interrupted is not committed; relaunch with "
              f"--load {cfg.save or 'DIR'} to continue from the last checkpoint.", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_TIMEOUT) from None
    cfg, state = r.cfg, r.state
    checkpointing.wait_for_checksums()  # (the last save's)
    if dist.get_rank() == 0:
        tok_s = r.tokens / max(r.seconds, 1e-9)
        fmt = lambda x: "n/a" if x is None else f"{x:.4f}"  # noqa: E731
        print(f"\ndone: {cfg.model} {cfg.num_layers} layers, iteration {state.iteration} in "
              f"{time.time() - t0:.1f}s ({tok_s:,.0f} tokens/s) | train loss {fmt(r.first_loss)} -> "
              f"{fmt(r.last_loss)} | val loss {fmt(r.val_loss)}"
              + (f" | checkpoint {cfg.save}" if cfg.save else "")
              + (f" | metrics {cfg.metrics_file}" if cfg.metrics_file else ""), flush=True)
    platform.shutdown()
    return r

if __name__ == "__main__":
    main()
