"""The training loop: megatron-core's forward_backward_func (1F1B with PP), DDP grads, our optimizer
step, held-out eval, metrics, checkpoints.

State flows one way: config -> platform -> model -> optimizer -> loop.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import signal
import time
from functools import partial

import torch
import torch.distributed as dist
from megatron.core import parallel_state as ps
from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads
from megatron.core.pipeline_parallel import get_forward_backward_func

from megatron_grow import checkpointing, flops
from megatron_grow.lifetime import die_with_parent
from megatron_grow.models import build_model
from megatron_grow.monitor import Monitor
from megatron_grow.optim import Optimizer, build_scheduler
from megatron_grow.platform import collective_device


@dataclasses.dataclass
class State:
    """Everything of a run that lives in one (model, optimizer, layout) state."""

    model: DistributedDataParallel
    optimizer: Optimizer
    scheduler: object
    iteration: int = 0
    consumed_samples: int = 0
    ledger: dict = dataclasses.field(default_factory=flops.empty_ledger)  # cumulative compute
    expert_load: object = None  # MoE models: megatron_grow/models/moe.py ExpertLoad
    skipped_steps: int = 0  # updates skipped over the run (non-finite or spiking loss / grad norm)
    skipped_in_a_row: int = 0
    recent_losses: collections.deque = dataclasses.field(default_factory=lambda: collections.deque(maxlen=SPIKE_WINDOW))


SPIKE_WINDOW = 20  # --loss-spike-factor compares a loss with the mean of this many last applied steps


class Stopped(RuntimeError):
    """The run stopped early, after saving: a signal (SIGTERM, SIGINT, SIGUSR1) or --exit-duration-in-mins."""


# SIGHUP: the terminal closed or, for torchrun's workers, torchrun died (the kernel sends it to each
# worker thread, so repeats of it are one request, never the "second signal" that ends waiting)
STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1", "SIGHUP")


class StopRequests:
    """Signals caught while training, and the wall-clock limit; ``due()`` is one collective per
    iteration, so every rank stops after the same iteration whichever rank got the signal."""

    def __init__(self, cfg, device):
        self.received, self.device, self.t0 = None, device, time.time()
        self.limit = cfg.exit_duration_in_mins * 60 if cfg.exit_duration_in_mins else None
        self.previous = {s: signal.signal(getattr(signal, s), self._catch) for s in STOP_SIGNALS}
        if os.environ.get("TORCHELASTIC_RUN_ID"):  # torchrun's worker: if torchrun dies (a SIGUSR1 or SIGKILL
            die_with_parent(signal.SIGHUP)         # sent to it), save and stop rather than train unsupervised

    def _catch(self, signum, frame):
        if self.received is not None and signum != signal.SIGHUP:  # a second signal: no more waiting
            self.restore()
            os.kill(os.getpid(), signum)
            return
        self.received = signum

    def due(self) -> str | None:
        flags = torch.tensor([float(self.received or 0),
                              float(self.limit is not None and time.time() - self.t0 > self.limit)], device=self.device)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)  # (the signal of the highest number, if ranks got several)
        if flags[0]:
            return f"{signal.Signals(int(flags[0])).name} received"
        return "--exit-duration-in-mins reached" if flags[1] else None

    def restore(self):
        for s, h in self.previous.items():
            signal.signal(getattr(signal, s), h)


class Diverged(RuntimeError):
    """The run stopped without saving: --max-skipped-steps updates in a row were skipped, or the
    weights hold non-finite values at a save."""


def build_state(cfg, device: torch.device) -> State:
    """Model (wrapped in megatron DDP), optimizer and scheduler for the current parallel layout."""
    tp, pp = cfg.tensor_model_parallel_size, cfg.pipeline_model_parallel_size
    model = build_model(cfg, tp, pp, device)
    ddp = DistributedDataParallel(
        config=model.config,
        ddp_config=DistributedDataParallelConfig(grad_reduce_in_fp32=True, overlap_grad_reduce=False,
                                                 use_distributed_optimizer=False),
        module=model,
    )
    model.config.no_sync_func = ddp.no_sync
    model.config.finalize_model_grads_func = finalize_model_grads
    optimizer = Optimizer(ddp.module, cfg)
    state = State(ddp, optimizer, build_scheduler(optimizer, cfg))
    if cfg.num_experts:
        from megatron_grow.models.moe import ExpertLoad, clear_aux_loss_tracker

        clear_aux_loss_tracker()
        state.expert_load = ExpertLoad(model, cfg.num_layers, cfg.num_experts, device)
    return state


def _loss_func(loss_mask: torch.Tensor, output_tensor: torch.Tensor):
    losses = output_tensor.float()
    loss = torch.sum(losses.view(-1) * loss_mask.view(-1)) / loss_mask.sum().clamp(min=1)
    # The schedule divides the returned loss in place: report a clone.
    return loss, {"lm_loss": loss.detach().clone()}


def _forward_step(device, data_iterator, model):
    batch = next(data_iterator)
    tokens, labels = batch["tokens"].to(device), batch["labels"].to(device)
    output = model(tokens, batch["position_ids"].to(device), None, labels=labels)
    return output, partial(_loss_func, batch["loss_mask"].to(device))


def run_microbatches(cfg, state: State, data_iterator, device, forward_only: bool) -> float | None:
    """One global batch through forward(+backward); returns the mean loss on every rank."""
    fb = get_forward_backward_func()
    out = fb(
        forward_step_func=partial(_forward_step, device), data_iterator=data_iterator,
        model=[state.model], num_microbatches=cfg.num_micro_batches, seq_length=cfg.seq_length,
        micro_batch_size=cfg.micro_batch_size, decoder_seq_length=cfg.seq_length, forward_only=forward_only,
    )
    return average_loss(out)


def average_loss(losses: list) -> float:
    """Mean of the micro-batch losses over DP ranks, made known to every rank (rank 0 logs it)."""
    total = torch.zeros(2, dtype=torch.float64)
    if ps.is_pipeline_last_stage() and ps.get_tensor_model_parallel_rank() == 0:
        total[0] = sum(float(x["lm_loss"]) for x in losses)
        total[1] = len(losses)
    total = total.to(collective_device())
    dist.all_reduce(total)
    return (total[0] / total[1]).item()


def train_step(cfg, state: State, data_iterator, device) -> tuple[float, float, str | None]:
    """Forward, backward and (unless it is skipped) the update. Returns (loss, grad norm, why the
    update was skipped or None). Loss and grad norm are reduced over all ranks, so every rank takes
    the same decision. A skipped step changes no weight and no optimizer state; the LR schedule
    still advances (the LR stays a function of the iteration)."""
    state.model.zero_grad_buffer()
    loss = run_microbatches(cfg, state, data_iterator, device, forward_only=False)
    grad_norm = state.optimizer.grad_norm()
    why = skip_reason(cfg, state, loss, grad_norm)
    if why is None:
        state.optimizer.step(state.iteration, grad_norm)
        state.recent_losses.append(loss)
    state.scheduler.step(increment=1)
    if state.expert_load is not None:
        from megatron_grow.models.moe import clear_aux_loss_tracker

        clear_aux_loss_tracker()
    return loss, grad_norm, why


def skip_reason(cfg, state: State, loss: float, grad_norm: float) -> str | None:
    if not math.isfinite(loss) or not math.isfinite(grad_norm):
        return f"loss {loss}, grad norm {grad_norm}"
    recent = state.recent_losses
    if cfg.loss_spike_factor and len(recent) == recent.maxlen and loss > cfg.loss_spike_factor * (
            mean := sum(recent) / len(recent)):
        return f"loss {loss:.4g} > --loss-spike-factor {cfg.loss_spike_factor:g} x {mean:.4g} (mean of the last {len(recent)})"
    return None


@torch.no_grad()
def evaluate(cfg, state: State, make_valid_iterator, device) -> float:
    """Mean held-out loss over --eval-iters fixed global batches (the same batches every time)."""
    state.model.eval()
    it = make_valid_iterator()
    loss = sum(run_microbatches(cfg, state, it, device, forward_only=True) for _ in range(cfg.eval_iters))
    state.model.train()
    return loss / cfg.eval_iters


def common_state(cfg, state: State) -> dict:
    return {"consumed_samples": state.consumed_samples, "ledger": dict(state.ledger),
            "skipped_steps": state.skipped_steps, "layout": cfg.layout,
            "num_layers": cfg.num_layers, "family": cfg.model,
            "config": {k: v for k, v in dataclasses.asdict(cfg).items() if isinstance(v, (int, float, str, bool, type(None)))}}


def save_checkpoint(cfg, state: State) -> None:
    if not weights_finite(state):
        raise Diverged(f"iteration {state.iteration}: the weights hold non-finite values; not saving them "
                       f"(the latest checkpoint in --save {cfg.save} stays the one to resume)")
    checkpointing.save(cfg.save, state.iteration, state.model.module, state.optimizer, state.scheduler,
                       common_state(cfg, state))
    if cfg.keep_last_k and dist.get_rank() == 0:
        checkpointing.prune(cfg.save, cfg.keep_last_k)


def weights_finite(state: State) -> bool:
    """Every rank's weights finite (one collective)."""
    params = list(state.model.module.parameters())
    bad = torch.zeros(1, device=params[0].device)
    for p in params:
        bad += (~torch.isfinite(p)).any()
    dist.all_reduce(bad)
    return bad.item() == 0


def load_checkpoint(cfg, state: State) -> None:
    restore_progress(state, checkpointing.load(cfg.load, state.model.module, state.optimizer, state.scheduler,
                                               cfg.ckpt_step, cfg.layout))


def restore_progress(state: State, common: dict) -> None:
    """Iteration, data position and compute ledger from a checkpoint's common state."""
    state.iteration = common["iteration"]
    state.consumed_samples = common["consumed_samples"]
    state.ledger = dict(flops.empty_ledger(), **common.get("ledger", {}))
    state.skipped_steps = common.get("skipped_steps", 0)


def train(cfg, state: State, data, device) -> dict:
    """The loop. ``data`` provides train_iterator(consumed_samples), valid_iterator() and relayout().

    With --grow-to-layers the model grows after iteration tau (megatron_grow/growth/online.py);
    from then on ``cfg`` is the grown config (depth and layout)."""
    from megatron_grow.config import grow_iteration
    from megatron_grow.growth import online

    rank = dist.get_rank()
    mon = Monitor(cfg, rank, state.iteration)
    tau = grow_iteration(cfg)

    def describe(c):
        active = f" ({flops.param_count(c, active=True) / 1e6:.2f}M active)" if c.num_experts else ""
        mon.print(f"model {c.model}/{c.preset}: {c.num_layers} layers, {flops.param_count(c) / 1e6:.2f}M params{active} | "
                  f"layout TP{c.tensor_model_parallel_size} PP{c.pipeline_model_parallel_size} "
                  f"DP{c.data_parallel_size} | global batch {c.global_batch_size} x {c.seq_length} tokens | "
                  f"iters {state.iteration}->{c.train_iters}")
        return c.global_batch_size * c.seq_length, flops.ledger(c, c.global_batch_size * c.seq_length)

    tokens_per_iter, flops_per_iter = describe(cfg)
    if cfg.grow_plan_text:
        mon.print(cfg.grow_plan_text)
    if tau is not None and cfg.num_layers < (cfg.grow_to_layers or 0) and not cfg.save:
        mon.print(f"warning: no --save, so the growth at iteration {tau} writes its source checkpoint to a temporary "
                  "directory on rank 0's machine and removes it afterwards (single-node jobs only; pass --save to "
                  "keep it as DIR/grow_source)")
    train_iter = data.train_iterator(state.consumed_samples)
    summary = {"first_loss": None, "last_loss": None, "val_loss": None, "tokens": 0, "seconds": 0.0, "flops": 0}
    t_start, saved = time.time(), state.iteration
    stops = StopRequests(cfg, device)  # (one collective per iteration: a signal or the time limit)
    try:
        while state.iteration < cfg.train_iters:
            if tau is not None and state.iteration == tau and cfg.num_layers < (cfg.grow_to_layers or 0):
                cfg, state, event = online.grow(cfg, state, data, device, mon,
                                                lambda c, s: evaluate(c, s, data.valid_iterator, device))
                mon.log(event)
                flops.add(state.ledger, {}, 0, event["seconds"])
                mon.print(f"iter {event['iter']}: grew {event['from_layers']} -> {event['to_layers']} layers in "
                          f"{event['seconds']:.1f}s, held-out loss {event['loss_before']:.4f} -> {event['loss_after']:.4f}")
                tokens_per_iter, flops_per_iter = describe(cfg)
                train_iter = data.train_iterator(state.consumed_samples)  # (a new state: no loss history)
            t0 = time.time()
            loss, grad_norm, skipped = train_step(cfg, state, train_iter, device)
            state.iteration += 1
            state.consumed_samples += cfg.global_batch_size
            dt = time.time() - t0
            summary["tokens"] += tokens_per_iter
            summary["flops"] += flops_per_iter["flops"]
            flops.add(state.ledger, flops_per_iter, tokens_per_iter, dt)
            state.skipped_in_a_row = state.skipped_in_a_row + 1 if skipped else 0
            state.skipped_steps += bool(skipped)
            if skipped:
                mon.print(f"iter {state.iteration}: update skipped ({skipped}); {state.skipped_in_a_row} in a row, "
                          f"{state.skipped_steps} in all (--max-skipped-steps {cfg.max_skipped_steps})")
            summary["first_loss"] = summary["first_loss"] if summary["first_loss"] is not None else loss
            summary["last_loss"] = loss
            tp, pp, dp = cfg.tensor_model_parallel_size, cfg.pipeline_model_parallel_size, cfg.data_parallel_size
            if state.iteration % cfg.log_interval == 0 or state.iteration == cfg.train_iters:
                moe = {"expert_load": state.expert_load.collect()} if state.expert_load is not None else {}
                mon.log({"iter": state.iteration, "consumed_samples": state.consumed_samples, "lm_loss": loss,
                         "lr": state.optimizer.param_groups[0]["lr"], "grad_norm": grad_norm,
                         "num_layers": cfg.num_layers, "tp": tp, "pp": pp, "dp": dp, "tokens": tokens_per_iter,
                         **flops_per_iter, "step_time_s": dt, "tokens_per_s": tokens_per_iter / dt, **state.ledger, **moe,
                         **({"lr_new_layers": state.optimizer.last_new_layer_lr}
                            if state.optimizer.last_new_layer_lr is not None else {}),
                         **({"skipped": skipped} if skipped else {}), "skipped_steps": state.skipped_steps})
            if state.skipped_in_a_row >= cfg.max_skipped_steps:
                mon.close()
                last = checkpointing.latest_iteration(cfg.save) if cfg.save else None
                raise Diverged(f"iteration {state.iteration}: {state.skipped_in_a_row} updates in a row skipped "
                               f"(--max-skipped-steps {cfg.max_skipped_steps}; last: {skipped}). Stopped without saving; "
                               + (f"the latest checkpoint is iteration {last} in --save {cfg.save}. " if last is not None
                                  else "") + "Lower --lr, set --clip-grad, or check the data.")
            mon.advance()
            if state.iteration % cfg.eval_interval == 0 or state.iteration == cfg.train_iters:
                val = evaluate(cfg, state, data.valid_iterator, device)
                summary["val_loss"] = val
                mon.log({"iter": state.iteration, "consumed_samples": state.consumed_samples, "val_loss": val})
                mon.print(f"iter {state.iteration}: val_loss {val:.4f}")
            if cfg.save and cfg.save_interval and state.iteration % cfg.save_interval == 0:
                if state.skipped_in_a_row:  # the latest checkpoint stays one taken after an applied update
                    mon.print(f"iter {state.iteration}: not saving while updates are being skipped")
                else:
                    save_checkpoint(cfg, state)
                    saved = state.iteration
            if cfg.exit_interval and state.iteration % cfg.exit_interval == 0:
                mon.print(f"iter {state.iteration}: stopping (--exit-interval {cfg.exit_interval})")
                break
            why = stops.due() if state.iteration < cfg.train_iters else None
            if why:
                if cfg.save and saved != state.iteration:
                    save_checkpoint(cfg, state)
                mon.close()
                raise Stopped(f"iteration {state.iteration}: {why}; " + (
                    f"checkpoint saved: relaunch with --load {cfg.save} to continue" if cfg.save
                    else "no --save, so nothing was saved"))
    finally:
        stops.restore()
    if cfg.save and saved != state.iteration:
        save_checkpoint(cfg, state)
    summary["seconds"] = time.time() - t_start
    summary["cfg"], summary["state"] = cfg, state
    mon.close()
    return summary


@torch.no_grad()
def forward_logits(cfg, state: State, tokens: torch.Tensor, device) -> torch.Tensor | None:
    """Full-vocab logits [b, s, V] of ``tokens`` [b, s] (one micro-batch through all stages).

    Returned on the last pipeline stage (gathered over TP); None on other stages."""
    from megatron.core.tensor_parallel import gather_from_tensor_model_parallel_region

    def step(it, model):
        batch = next(it)
        out = model(batch.to(device), torch.arange(batch.shape[1], device=device).expand_as(batch), None)
        return out, lambda o: (o.sum() * 0, {"logits": gather_from_tensor_model_parallel_region(o).clone()})

    state.model.eval()
    out = get_forward_backward_func()(
        forward_step_func=step, data_iterator=iter([tokens]), model=[state.model], num_microbatches=1,
        seq_length=tokens.shape[1], micro_batch_size=tokens.shape[0], decoder_seq_length=tokens.shape[1],
        forward_only=True,
    )
    state.model.train()
    return out[0]["logits"] if ps.is_pipeline_last_stage() else None
