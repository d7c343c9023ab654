"""The state of a run between two iterations: model (in megatron DDP), optimizer, scheduler and
progress (iteration, data position, compute ledger, skipped updates). The training loop
(training.py) steps it; growth (growth/online.py) turns one State into another; checkpoints
(checkpointing.py) save and restore it. State flows one way: training -> growth -> runstate."""

from __future__ import annotations

import collections
import dataclasses

import torch
from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads
from megatron.core.transformer.module import Float16Module

from megatron_grow import checkpointing, flops
from megatron_grow.data.datasets import data_blend
from megatron_grow.models import architecture, build_model
from megatron_grow.optim import Optimizer, build_scheduler

SPIKE_WINDOW = 20  # --loss-spike-factor compares a loss with the mean of this many last applied steps


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

    @property
    def module(self):
        """The GPTModel (this stage) inside megatron DDP and, in bf16, megatron's Float16Module."""
        return unwrap(self.model)


def unwrap(model):
    """The GPTModel inside megatron DDP / Float16Module wrappers."""
    from megatron.core.transformer.module import Float16Module

    while isinstance(model, (DistributedDataParallel, Float16Module)):
        model = model.module
    return model


def build_state(cfg, device: torch.device) -> State:
    """Model (wrapped in megatron DDP), optimizer and scheduler for the current parallel layout."""
    tp, pp = cfg.tensor_model_parallel_size, cfg.pipeline_model_parallel_size
    model = build_model(cfg, tp, pp, device)
    # --calculate-per-token-loss (read by DDP below and by the schedule) and --cross-entropy-loss-fusion (read by
    # the model's loss): megatron-core's, as Megatron-LM sets them
    model.config.calculate_per_token_loss = cfg.calculate_per_token_loss
    model.config.cross_entropy_loss_fusion = cfg.cross_entropy_loss_fusion
    model.config.cross_entropy_fusion_impl = "native"  # (Megatron-LM's default)
    # bf16 as Megatron-LM runs it: megatron-core's Float16Module casts every parameter and buffer to bf16
    # (norms and GPT-2's position embeddings too; megatron's router keeps its expert bias in fp32) and
    # returns the last stage's output in fp32; DDP reduces the grads in fp32 (--grad-reduce-in-bf16: in bf16), our
    # optimizer keeps fp32 masters
    ddp = DistributedDataParallel(
        config=model.config,
        ddp_config=DistributedDataParallelConfig(grad_reduce_in_fp32=not (cfg.bf16 and cfg.grad_reduce_in_bf16),
                                                 overlap_grad_reduce=cfg.overlap_grad_reduce,
                                                 bucket_size=cfg.ddp_bucket_size, use_distributed_optimizer=False),
        module=Float16Module(model.config, model) if cfg.bf16 else model,
    )
    model.config.no_sync_func = ddp.no_sync
    if cfg.overlap_grad_reduce:  # buckets start reducing as their grads are ready, in the last micro-batch's backward
        model.config.grad_sync_func = ddp.start_grad_sync
    model.config.finalize_model_grads_func = finalize_model_grads
    optimizer = Optimizer(model, cfg)
    state = State(ddp, optimizer, build_scheduler(optimizer, cfg))
    if cfg.num_experts:
        from megatron_grow.models.moe import ExpertLoad, clear_aux_loss_tracker

        clear_aux_loss_tracker()
        state.expert_load = ExpertLoad(model, cfg.num_layers, cfg.num_experts, device)
    return state


def common_state(cfg, state: State) -> dict:
    return {"consumed_samples": state.consumed_samples, "ledger": dict(state.ledger),
            "skipped_steps": state.skipped_steps, "layout": cfg.layout,
            "num_layers": cfg.num_layers, "family": cfg.model, "architecture": architecture(cfg),
            "data_blend": data_blend(cfg),  # (what a resume compares: checkpointing.blend_problems)
            "config": {k: v for k, v in dataclasses.asdict(cfg).items()
                       if isinstance(v, (int, float, str, bool, list, type(None)))}}


def load_checkpoint(cfg, state: State) -> None:
    restore_progress(state, checkpointing.load(cfg.load, state.module, state.optimizer, state.scheduler,
                                               cfg.ckpt_step, cfg.layout))


def restore_progress(state: State, common: dict) -> None:
    """Iteration, data position and compute ledger from a checkpoint's common state."""
    state.iteration = common["iteration"]
    state.consumed_samples = common["consumed_samples"]
    state.ledger = dict(flops.empty_ledger(), **common.get("ledger", {}))
    state.skipped_steps = common.get("skipped_steps", 0)
