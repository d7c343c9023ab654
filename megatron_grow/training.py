"""The training loop: megatron-core's forward_backward_func (1F1B with PP), DDP grads, our optimizer
step, held-out eval, metrics, checkpoints.

State flows one way: the loop (here) steps a runstate.State and hands it to growth (growth/online.py),
which returns the grown one; neither growth nor runstate imports this module.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import time
from functools import partial

import torch
import torch.distributed as dist
from megatron.core import parallel_state as ps
from megatron.core.pipeline_parallel import get_forward_backward_func

from megatron_grow import checkpointing, flops, memory
from megatron_grow.lifetime import STOP_SIGNALS, die_with_parent
from megatron_grow.monitor import LoopHooks, Monitor, empty_unused_memory
from megatron_grow.platform import collective_device
from megatron_grow.runstate import State, common_state
from megatron_grow.telemetry import GpuTelemetry


class Stopped(RuntimeError):
    """The run stopped early, after saving: a signal (SIGTERM, SIGINT, SIGUSR1) or --exit-duration-in-mins."""


class StopRequests:
    """Signals caught while training, and the wall-clock limit. Each rank's requests ride on the
    all-reduce that sums the iteration's loss (``local_counts`` in, ``decide`` on the sums), so every
    rank stops after the same iteration whichever rank got the signal, at no collective of their own."""

    def __init__(self, cfg, device):
        self.received, self.device, self.t0, self.why = None, device, time.time(), None
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

    def local_counts(self) -> list[float]:
        """This rank's requests as counts to sum over ranks: one per stop signal, then the time limit."""
        return [float(self.received == getattr(signal, s)) for s in STOP_SIGNALS] + [
            float(self.limit is not None and time.time() - self.t0 > self.limit)]

    def decide(self, counts: list[float]) -> None:
        """From the counts summed over ranks: why to stop (the signal of the highest number, if ranks
        got several), or None."""
        got = [getattr(signal, s) for s, n in zip(STOP_SIGNALS, counts, strict=False) if n]
        self.why = (f"{signal.Signals(max(got)).name} received" if got else
                    "--exit-duration-in-mins reached" if counts[-1] else None)

    def restore(self):
        for s, h in self.previous.items():
            signal.signal(getattr(signal, s), h)


class Diverged(RuntimeError):
    """The run stopped without saving: --max-skipped-steps updates in a row were skipped, or the
    weights hold non-finite values at a save."""


def _loss_func(loss_mask: torch.Tensor, output_tensor: torch.Tensor, per_token: bool = False):
    losses = output_tensor.float()
    if per_token:  # --calculate-per-token-loss: the token sum and count; megatron-core's schedule and
        # finalize_model_grads divide the gradients by the global batch's loss tokens (over micro-batches and DP)
        loss, tokens = torch.sum(losses.view(-1) * loss_mask.view(-1)), loss_mask.sum().to(torch.int)
        return loss, tokens, {"lm_loss": loss.detach().clone(), "tokens": tokens.detach().clone()}
    loss = torch.sum(losses.view(-1) * loss_mask.view(-1)) / loss_mask.sum().clamp(min=1)
    # The schedule divides the returned loss in place: report a clone.
    return loss, {"lm_loss": loss.detach().clone()}


def _forward_step(device, per_token, data_iterator, model):
    batch = next(data_iterator)
    tokens, labels = batch["tokens"].to(device), batch["labels"].to(device)
    output = model(tokens, batch["position_ids"].to(device), None, labels=labels)
    return output, partial(_loss_func, batch["loss_mask"].to(device), per_token=per_token)


def run_microbatches(cfg, state: State, data_iterator, device, forward_only: bool) -> list[dict]:
    """One global batch through forward(+backward); returns the micro-batch losses (tensors, last stage)."""
    fb = get_forward_backward_func()
    return fb(
        forward_step_func=partial(_forward_step, device, cfg.calculate_per_token_loss), data_iterator=data_iterator,
        model=[state.model], num_microbatches=cfg.num_micro_batches, seq_length=cfg.seq_length,
        micro_batch_size=cfg.micro_batch_size, decoder_seq_length=cfg.seq_length, forward_only=forward_only,
    )


def reduce_losses(losses: list, counts: list[float] = ()) -> torch.Tensor:
    """[sum of the micro-batch losses, their number, *counts] summed over all ranks: one all-reduce and
    no read back (the last stage's first TP rank gives the losses, every rank its ``counts``). With
    --calculate-per-token-loss: [sum of the token losses, the loss tokens, *counts]."""
    total = torch.zeros(2 + len(counts), dtype=torch.float64, device=collective_device())
    if ps.is_pipeline_last_stage() and ps.get_tensor_model_parallel_rank() == 0 and losses:
        total[0] = torch.stack([x["lm_loss"] for x in losses]).double().sum()
        total[1] = sum(x["tokens"] for x in losses) if "tokens" in losses[0] else len(losses)
    if counts:
        total[2:] = torch.tensor(counts, dtype=torch.float64)
    dist.all_reduce(total)
    return total


def average_loss(losses: list) -> float:
    """Mean of the micro-batch losses over DP ranks, made known to every rank (rank 0 logs it)."""
    total, n = reduce_losses(losses).tolist()
    return total / n


def train_step(cfg, state: State, data_iterator, device, stops: StopRequests | None = None
               ) -> tuple[float, float, str | None]:
    """Forward, backward and (unless it is skipped) the update. Returns (loss, grad norm, why the
    update was skipped or None). Loss and grad norm are reduced over all ranks, so every rank takes
    the same decision. A skipped step changes no weight and no optimizer state; the LR schedule
    still advances (the LR stays a function of the iteration). ``stops``' requests ride on the loss's
    all-reduce. The loss, the grad norm and the stop requests come back to the host in one read, the
    iteration's only one: the non-finite guard, clipping and the stop decision need them every step."""
    state.model.zero_grad_buffer()
    total = reduce_losses(run_microbatches(cfg, state, data_iterator, device, forward_only=False),
                          stops.local_counts() if stops else [])
    empty_unused_memory(cfg, 1)
    norm = state.optimizer.grad_sq().sum().sqrt()
    values = torch.cat([total, norm.to(total).view(1)]).tolist()
    loss, grad_norm = values[0] / values[1], values[-1]
    if stops:
        stops.decide(values[2:-1])
    why = skip_reason(cfg, state, loss, grad_norm)
    if why is None:
        state.optimizer.step(state.iteration, grad_norm)
        state.recent_losses.append(loss)
    state.scheduler.step(increment=1)
    empty_unused_memory(cfg, 2)
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
        return (f"loss {loss:.4g} > --loss-spike-factor {cfg.loss_spike_factor:g} x {mean:.4g} "
                f"(mean of the last {len(recent)})")
    return None


@torch.no_grad()
def evaluate(cfg, state: State, make_valid_iterator, device) -> float:
    """Mean held-out loss over --eval-iters fixed global batches (the same batches every time)."""
    state.model.eval()
    it = make_valid_iterator()
    loss = 0.0
    for _ in range(cfg.eval_iters):
        loss += average_loss(run_microbatches(cfg, state, it, device, forward_only=True))
        empty_unused_memory(cfg, 1)
    state.model.train()
    return loss / cfg.eval_iters


def save_checkpoint(cfg, state: State) -> None:
    if not weights_finite(state):
        raise Diverged(f"iteration {state.iteration}: the weights hold non-finite values; not saving them "
                       f"(the latest checkpoint in --save {cfg.save} stays the one to resume)")
    checkpointing.save(cfg.save, state.iteration, state.module, state.optimizer, state.scheduler,
                       common_state(cfg, state))
    if cfg.keep_last_k and dist.get_rank() == 0:
        checkpointing.prune(cfg.save, cfg.keep_last_k)


def weights_finite(state: State) -> bool:
    """Every rank's weights finite (one collective)."""
    params = list(state.module.parameters())
    bad = torch.zeros(1, device=params[0].device)
    for p in params:
        bad += (~torch.isfinite(p)).any()
    dist.all_reduce(bad)
    return bad.item() == 0


@dataclasses.dataclass
class Step:
    """What one training step did: its loss and grad norm (reduced over all ranks), why its update was
    skipped (None: applied) and its seconds."""

    loss: float
    grad_norm: float
    skipped: str | None
    seconds: float


@dataclasses.dataclass
class Result:
    """A finished run: its final config and state (the grown ones after growth) and a summary."""

    cfg: object
    state: State
    first_loss: float | None = None
    last_loss: float | None = None
    val_loss: float | None = None
    tokens: int = 0
    flops: float = 0.0
    seconds: float = 0.0


def memory_options(cfg, state) -> str:
    """The memory-for-compute options the built model and DDP actually run with, for the banner."""
    mc, ddp = state.module.config, state.model.ddp_config
    out = ["sequence parallel"] if mc.sequence_parallel else []
    if mc.recompute_granularity == "full":
        out.append(f"recompute full ({mc.recompute_method} {mc.recompute_num_layers})")
    elif mc.recompute_granularity == "selective":
        out.append(f"recompute {','.join(mc.recompute_modules)}")
    if ddp.overlap_grad_reduce:
        out.append(f"grad reduce overlapped (buckets of {ddp.bucket_size} params)")
    if cfg.use_distributed_optimizer:
        out.append("distributed optimizer")
    return " | " + ", ".join(out) if out else ""


class Trainer:
    """The loop. Each iteration is a list of named calls: grow if due, step, account for it, log, stop if
    diverged, evaluate, save, stop at --exit-interval, stop if asked. ``data`` provides
    train_iterator(consumed_samples), valid_iterator() and relayout(). With --grow-to-layers the model grows
    after iteration tau (growth/online.py turns the State into the grown one); from then on ``cfg`` is the
    grown config."""

    def __init__(self, cfg, state: State, data, device):
        from megatron_grow.config import grow_iteration, grown_config
        from megatron_grow.growth import online
        from megatron_grow.growth.plan import warnings as plan_warnings

        self.cfg, self.state, self.data, self.device = cfg, state, data, device
        self.mon = Monitor(cfg, dist.get_rank(), state.iteration)
        self.hooks = LoopHooks(cfg, dist.get_rank(), device)  # --profile, --manual-gc
        self.gpus = GpuTelemetry(device, cfg.bf16)
        self.tau = grow_iteration(cfg)
        self.result = Result(cfg, state)
        self.saved = state.iteration  # the iteration of the latest checkpoint this run wrote (or loaded)
        self.describe()
        for warning in memory.launch_warnings(cfg, memory.capacity(device)):
            self.mon.print(warning)
        if cfg.grow_plan_text:
            self.mon.print(cfg.grow_plan_text)
        if self.growth_pending():
            for warning in plan_warnings(cfg.num_layers, cfg.grow_placement, cfg.grow_init):
                self.mon.print(warning)
        if self.growth_pending() and not cfg.save and not online.in_memory(cfg, grown_config(cfg)):
            self.mon.print(f"warning: no --save, so the growth at iteration {self.tau} writes its source checkpoint to "
                           "a temporary directory on rank 0's machine and removes it afterwards (single-node jobs "
                           "only; pass --save to keep it as DIR/grow_source)")
        self.batches = data.train_iterator(state.consumed_samples)

    def describe(self) -> None:
        """Print the model and layout; set the tokens and FLOPs of one iteration."""
        c = self.cfg
        active = f" ({flops.param_count(c, active=True) / 1e6:.2f}M active)" if c.num_experts else ""
        self.mon.print(f"model {c.model}/{c.preset}: {c.num_layers} layers, {flops.param_count(c) / 1e6:.2f}M params"
                       f"{active} | layout TP{c.tensor_model_parallel_size} PP{c.pipeline_model_parallel_size} "
                       f"DP{c.data_parallel_size} | global batch {c.global_batch_size} x {c.seq_length} tokens | "
                       f"iters {self.state.iteration}->{c.train_iters}{memory_options(c, self.state)}")
        self.tokens_per_iter = c.global_batch_size * c.seq_length
        self.flops_per_iter = flops.ledger(c, self.tokens_per_iter)

    def growth_pending(self) -> bool:
        return self.tau is not None and self.cfg.num_layers < (self.cfg.grow_to_layers or 0)

    def run(self) -> Result:
        t_start = time.time()
        stops = StopRequests(self.cfg, self.device)  # (a signal or the time limit, seen by every rank at a step)
        self.hooks.start()
        try:
            while self.state.iteration < self.cfg.train_iters:
                self.hooks.before_iteration(self.state.iteration)
                self.grow_if_due()
                step = self.step(stops)
                self.account(step)
                self.log(step)
                self.stop_if_diverged(step)
                self.mon.advance()
                self.hooks.after_iteration(self.state.iteration)
                self.evaluate_if_due()
                self.save_if_due()
                if self.stop_at_exit_interval():
                    break
                self.stop_if_asked(stops)
        finally:
            stops.restore()
            self.hooks.close()
        self.save_unless_saved()
        self.result.seconds = time.time() - t_start
        self.result.cfg, self.result.state = self.cfg, self.state
        self.mon.close()
        return self.result

    def grow_if_due(self) -> None:
        if not (self.growth_pending() and self.state.iteration == self.tau):
            return
        from megatron_grow.config import grow_iteration
        from megatron_grow.growth import online

        data, device = self.data, self.device
        self.cfg, self.state, event = online.grow(self.cfg, self.state, data, device, self.mon,
                                                  lambda c, s: evaluate(c, s, data.valid_iterator, device))
        self.mon.log(event)
        self.tau = grow_iteration(self.cfg)  # (--grow-schedule: the next step's)
        flops.add(self.state.ledger, {}, 0, event["seconds"])
        self.mon.print(f"iter {event['iter']}: grew {event['from_layers']} -> {event['to_layers']} layers "
                       f"(via {event['via']}) in {event['seconds']:.1f}s, held-out loss {event['loss_before']:.4f} -> "
                       f"{event['loss_after']:.4f}" + ("" if event["loss_after_measured"] else
                                                       " (not re-measured: the init preserves the function)"))
        self.describe()
        self.batches = data.train_iterator(self.state.consumed_samples)  # (a new state: no loss history)

    def step(self, stops: StopRequests | None = None) -> Step:
        """One training step (``account`` counts it)."""
        t0 = time.time()
        loss, grad_norm, skipped = train_step(self.cfg, self.state, self.batches, self.device, stops)
        return Step(loss, grad_norm, skipped, time.time() - t0)

    def account(self, step: Step) -> None:
        """The step's bookkeeping: the iteration and sample counters, the skipped-update counts, the
        compute ledger and the run's totals."""
        cfg, state, r = self.cfg, self.state, self.result
        state.iteration += 1
        state.consumed_samples += cfg.global_batch_size
        r.tokens += self.tokens_per_iter
        r.flops += self.flops_per_iter["flops"]
        flops.add(state.ledger, self.flops_per_iter, self.tokens_per_iter, step.seconds)
        state.skipped_in_a_row = state.skipped_in_a_row + 1 if step.skipped else 0
        state.skipped_steps += bool(step.skipped)
        r.first_loss = r.first_loss if r.first_loss is not None else step.loss
        r.last_loss = step.loss

    def log(self, step: Step) -> None:
        cfg, state = self.cfg, self.state
        if step.skipped:
            self.mon.print(f"iter {state.iteration}: update skipped ({step.skipped}); {state.skipped_in_a_row} in a "
                           f"row, {state.skipped_steps} in all (--max-skipped-steps {cfg.max_skipped_steps})")
        if state.iteration % cfg.log_interval and state.iteration != cfg.train_iters:
            return
        moe = {"expert_load": state.expert_load.collect()} if state.expert_load is not None else {}
        gpus = self.gpus.record(self.flops_per_iter["flops"], step.seconds)
        new_lr = state.optimizer.last_new_layer_lr
        self.mon.log({"iter": state.iteration, "consumed_samples": state.consumed_samples, "lm_loss": step.loss,
                      "lr": state.optimizer.param_groups[0]["lr"], "grad_norm": step.grad_norm,
                      "num_layers": cfg.num_layers, "tp": cfg.tensor_model_parallel_size,
                      "pp": cfg.pipeline_model_parallel_size, "dp": cfg.data_parallel_size,
                      "tokens": self.tokens_per_iter, **self.flops_per_iter, "step_time_s": step.seconds,
                      "tokens_per_s": self.tokens_per_iter / step.seconds, **state.ledger, **moe,
                      **self.mon.throughput_fields(self.flops_per_iter["flops"], step.seconds, cfg.world_size),
                      **({"lr_new_layers": new_lr} if new_lr is not None else {}),
                      **({"skipped": step.skipped} if step.skipped else {}), "skipped_steps": state.skipped_steps,
                      **gpus})

    def stop_if_diverged(self, step: Step) -> None:
        cfg, state = self.cfg, self.state
        if state.skipped_in_a_row < cfg.max_skipped_steps:
            return
        self.mon.close()
        last = checkpointing.latest_iteration(cfg.save) if cfg.save else None
        raise Diverged(f"iteration {state.iteration}: {state.skipped_in_a_row} updates in a row skipped "
                       f"(--max-skipped-steps {cfg.max_skipped_steps}; last: {step.skipped}). Stopped without saving; "
                       + (f"the latest checkpoint is iteration {last} in --save {cfg.save}. " if last is not None
                          else "") + "Lower --lr, set --clip-grad, or check the data.")

    def evaluate_if_due(self) -> None:
        cfg, state = self.cfg, self.state
        if state.iteration % cfg.eval_interval and state.iteration != cfg.train_iters:
            return
        self.hooks.before_eval()
        val = evaluate(cfg, state, self.data.valid_iterator, self.device)
        self.hooks.after_eval()
        self.result.val_loss = val
        self.mon.log({"iter": state.iteration, "consumed_samples": state.consumed_samples, "val_loss": val})
        self.mon.print(f"iter {state.iteration}: val_loss {val:.4f}")

    def save_if_due(self) -> None:
        cfg, state = self.cfg, self.state
        if not (cfg.save and cfg.save_interval and state.iteration % cfg.save_interval == 0):
            return
        if state.skipped_in_a_row:  # the latest checkpoint stays one taken after an applied update
            self.mon.print(f"iter {state.iteration}: not saving while updates are being skipped")
            return
        save_checkpoint(cfg, state)
        self.saved = state.iteration

    def save_unless_saved(self) -> None:
        if self.cfg.save and self.saved != self.state.iteration:
            save_checkpoint(self.cfg, self.state)
            self.saved = self.state.iteration

    def stop_at_exit_interval(self) -> bool:
        """Whether --exit-interval ends the run after this iteration (which then saves, as at the end)."""
        it, n = self.state.iteration, self.cfg.exit_interval
        if not (n and it % n == 0):
            return False
        self.mon.print(f"iter {it}: stopping (--exit-interval {n})")
        return True

    def stop_if_asked(self, stops: StopRequests) -> None:
        why = stops.why if self.state.iteration < self.cfg.train_iters else None
        if not why:
            return
        self.save_unless_saved()
        self.mon.close()
        raise Stopped(f"iteration {self.state.iteration}: {why}; " + (
            f"checkpoint saved: relaunch with --load {self.cfg.save} to continue" if self.cfg.save
            else "no --save, so nothing was saved"))


def train(cfg, state: State, data, device) -> Result:
    return Trainer(cfg, state, data, device).run()


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
