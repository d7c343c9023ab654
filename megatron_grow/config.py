"""One typed RunConfig, parsed from Megatron-style flags; validate() reports every problem at once."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
from dataclasses import dataclass, field

import torch

from megatron_grow.growth.plan import INITS, OPTIMIZER_STATE_MODES, PLACEMENTS
from megatron_grow.models import FAMILIES

NOT_A_FLAG = {"flag": False}  # field metadata of RunConfig fields that no command-line flag sets


@dataclass
class RunConfig:
    # model
    model: str = "llama3"
    preset: str = "tiny"
    num_layers: int | None = None
    hidden_size: int | None = None
    ffn_hidden_size: int | None = None
    num_attention_heads: int | None = None
    num_query_groups: int | None = None
    kv_channels: int | None = None
    # None: the family's (untied for llama3 and deepseek-v3, tied for gpt2); presets may set it
    untie_embeddings_and_output_weights: bool | None = None
    # deepseek-v3 only (its presets fill them): multi-latent attention ...
    q_lora_rank: int | None = None  # 0: no query compression (a plain q projection)
    kv_lora_rank: int | None = None
    qk_head_dim: int | None = None
    qk_pos_emb_head_dim: int | None = None
    v_head_dim: int | None = None
    # ... and mixture of experts
    num_experts: int | None = None
    moe_router_topk: int | None = None
    moe_ffn_hidden_size: int | None = None
    moe_shared_expert_intermediate_size: int | None = None  # 0: no shared expert
    moe_first_dense_layers: int | None = None
    moe_layer_freq: int = 1  # after the first dense layers, every N-th layer is MoE
    moe_router_score_function: str = "sigmoid"
    moe_router_topk_scaling_factor: float | None = None  # routed experts' weights x this (DeepSeek-V3: 2.5)
    moe_router_num_groups: int | None = None  # group-limited routing: experts in this many equal groups ...
    moe_router_group_topk: int | None = None  # ... of which each token's top-k come from this many
    moe_router_load_balancing_type: str = "seq_aux_loss"
    moe_aux_loss_coeff: float = 1e-4
    moe_router_enable_expert_bias: bool = True  # aux-loss-free balancing (DeepSeekV3)
    moe_router_bias_update_rate: float = 1e-3
    moe_z_loss_coeff: float | None = None
    moe_token_dispatcher_type: str = "alltoall"
    seq_length: int | None = None
    max_position_embeddings: int | None = None
    vocab_size: int | None = None
    init_method_std: float = 0.02
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    # platform
    device: str = "auto"
    transformer_impl: str = "auto"
    bf16: bool | None = None
    # parallelism
    tensor_model_parallel_size: int = 1
    pipeline_model_parallel_size: int = 1
    expert_model_parallel_size: int = 1
    decoder_first_pipeline_num_layers: int | None = None
    decoder_last_pipeline_num_layers: int | None = None
    pipeline_layers: str | None = None  # explicit per-stage layer counts, e.g. "1,3"
    # split the sequence over the TP ranks outside attention and MLP (megatron's; always on for MoE with TP)
    sequence_parallel: bool = False
    # megatron DDP: all-reduce gradient buckets during backward (GPU/NCCL; also runs on gloo)
    overlap_grad_reduce: bool = False
    ddp_bucket_size: int | None = None  # parameters per gradient-reduction bucket (megatron's default)
    overlap_param_gather: bool = False  # megatron's distributed optimizer only: refused with a reason
    # activation recomputation (megatron's flags): "selective" recomputes --recompute-modules of each layer
    # in backward, "full" whole layers (--recompute-method uniform: chunks of --recompute-num-layers
    # layers; block: the first --recompute-num-layers layers of each pipeline stage)
    recompute_granularity: str | None = None
    recompute_method: str | None = None
    recompute_num_layers: int | None = None
    recompute_modules: str | None = None  # selective: comma-separated, default core_attn
    # training
    micro_batch_size: int = 4
    global_batch_size: int | None = None
    train_iters: int = 100
    seed: int = 1234
    optimizer: str = "adam"
    lr: float = 3e-3
    min_lr: float = 0.0
    lr_decay_style: str = "wsd"
    lr_warmup_iters: int | None = None
    lr_warmup_fraction: float = 0.02
    lr_wsd_decay_iters: int | None = None
    lr_wsd_decay_fraction: float = 0.1
    lr_wsd_decay_style: str = "linear"
    weight_decay: float | None = None  # default 0.1 for adam, 0.01 for muon-nsgd
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    clip_grad: float | None = None  # default 1.0 for adam, 0 (off) for muon-nsgd
    # a step whose loss or grad norm is not finite (or, with --loss-spike-factor F, whose loss exceeds F x
    # the mean of the last 20 applied steps) is skipped; this many skipped in a row stop the run
    max_skipped_steps: int = 10
    loss_spike_factor: float | None = None
    # Muon-NSGD (megatron_grow/optim/muon.py)
    muon_momentum: float = 0.95
    muon_nesterov: bool = True
    muon_ns_steps: int = 5
    muon_ns_coefficients: str = "3.4445,-4.7750,2.0315"
    muon_scale_mode: str = "match_adamw"  # one shared LR fits Muon and NSGD (benchmarks/optimizer_sweep.py)
    muon_split_qkv: str = "off"
    muon_tp_mode: str = "duplicated"
    muon_dp_spread: str = "auto"
    # shard the optimizer state (fp32 masters, moments) over the data-parallel group (ZeRO-1)
    use_distributed_optimizer: bool = False
    ns_backend: str = "auto"
    # muP (megatron_grow/mup.py)
    mup: bool = False
    mup_base_hidden_size: int | None = None
    mup_base_num_layers: int | None = None  # depth-muP residual multipliers when set
    # progressive growth (megatron_grow/growth)
    grow_at_iter: int | None = None
    grow_at_fraction: float | None = None
    grow_at: str | None = None  # "auto": tau from pilot metrics (megatron_grow/growth/tau.py)
    grow_pilot_metrics: str | None = None  # FIXED.jsonl,GROWN.jsonl
    grow_mix_tolerance: float = 0.01
    grow_to_layers: int | None = None
    grow_placement: str = "bottom"
    grow_init: str = "random"
    grow_optimizer_state: str = "inherit"
    # new layers' LR after growth: x M at tau, linearly back to x 1 over N iterations (N 0: x M to the end)
    grow_new_layer_lr_mult: float = 1.0
    grow_new_layer_lr_iters: int = 0
    grow_tensor_model_parallel_size: int | None = None
    grow_pipeline_model_parallel_size: int | None = None
    grow_expert_model_parallel_size: int | None = None
    grow_pipeline_layers: str | None = None
    # several growths in one run: "4@1050,8@1275" (to 4 layers after iteration 1050, to 8 after 1275),
    # each step optionally with its layout after it ("8@1275:tp2:pp2:ep2"); placement, init and optimizer
    # state from the flags above, for every step
    grow_schedule: str | None = None
    # data
    data_path: str | None = None
    tokenizer_model: str | None = None
    mock_data: bool = False
    split: str = "98,2,0"
    data_cache_path: str | None = None
    # eval
    eval_interval: int = 50
    eval_iters: int = 4
    # checkpointing
    save: str | None = None
    save_interval: int | None = None
    exit_interval: int | None = None
    load: str | None = None
    ckpt_step: int | None = None  # load this iteration of --load instead of the latest
    ckpt_fallback: bool = False  # the latest checkpoint damaged (checksums, unreadable): load the newest intact one
    keep_last_k: int | None = None  # keep only the newest K checkpoints in --save (and no stale .tmp)
    # stop early with a checkpoint (exit status 4): after this much wall-clock time; SIGTERM, SIGINT
    # and SIGUSR1 do the same at the end of the current iteration
    exit_duration_in_mins: float | None = None
    distributed_timeout_minutes: float = 10  # a collective that waits longer fails (a frozen rank)
    # resuming with LR-schedule flags that differ from the checkpoint's: apply the flags' schedule (else refused)
    override_opt_param_scheduler: bool = False
    # logging
    log_interval: int = 1
    metrics_file: str | None = None
    tensorboard_dir: str | None = None
    progress: bool = True
    # not flags: set by finalize (world size, the --grow-at auto plan) and grown_config (the source depth)
    world_size: int = field(default=1, metadata=NOT_A_FLAG)
    grow_plan_text: str | None = field(default=None, metadata=NOT_A_FLAG)
    grown_from_layers: int | None = field(default=None, metadata=NOT_A_FLAG)
    grown_at_iter: int | None = field(default=None, metadata=NOT_A_FLAG)  # tau of the growth that gave this depth

    @property
    def data_parallel_size(self) -> int:
        return self.world_size // (self.tensor_model_parallel_size * self.pipeline_model_parallel_size)

    @property
    def layout(self) -> dict:
        """The parallel layout as logged (growth events) and saved in checkpoints; "ep" with experts."""
        out = {"tp": self.tensor_model_parallel_size, "pp": self.pipeline_model_parallel_size,
               "dp": self.data_parallel_size}
        return {**out, "ep": self.expert_model_parallel_size} if self.num_experts else out

    @property
    def num_micro_batches(self) -> int:
        return self.global_batch_size // (self.micro_batch_size * self.data_parallel_size)

    @property
    def warmup_iters(self) -> int:
        return (self.lr_warmup_iters if self.lr_warmup_iters is not None
                else int(self.lr_warmup_fraction * self.train_iters))

    @property
    def wsd_decay_iters(self) -> int:
        if self.lr_wsd_decay_iters is not None:
            return self.lr_wsd_decay_iters
        return int(self.lr_wsd_decay_fraction * self.train_iters)

    @property
    def wsd_stable_end(self) -> int:
        """The last iteration before the WSD decay."""
        return self.train_iters - self.wsd_decay_iters

    def lr_schedule(self) -> dict:
        """The LR schedule these flags give, by the flags that set it (what a resume compares)."""
        out = {"lr": self.lr, "min_lr": self.min_lr, "lr_decay_style": self.lr_decay_style,
               "train_iters": self.train_iters, "lr_warmup_iters": self.warmup_iters, "weight_decay": self.weight_decay}
        if self.lr_decay_style == "wsd":
            out.update(lr_wsd_decay_iters=self.wsd_decay_iters, lr_wsd_decay_style=self.lr_wsd_decay_style)
        return out


NS_BACKENDS = ("torch", "triton", "te")  # Newton-Schulz implementations (megatron_grow/optim/newton_schulz.py)

CHOICES = {
    "model": sorted(FAMILIES),
    "device": ["auto", "cpu", "cuda"],
    "transformer_impl": ["auto", "local", "transformer_engine"],
    "optimizer": ["adam", "muon-nsgd"],
    "muon_scale_mode": ["spectral", "match_adamw"],
    "muon_split_qkv": ["off", "qkv", "group"],
    "muon_tp_mode": ["duplicated", "distributed", "blockwise"],
    "muon_dp_spread": ["auto", "on", "off"],
    "ns_backend": ["auto", *NS_BACKENDS],
    "lr_decay_style": ["wsd", "cosine", "constant", "linear"],
    "lr_wsd_decay_style": ["linear", "cosine", "exponential", "minus_sqrt"],
    "recompute_granularity": ["full", "selective"],
    "recompute_method": ["uniform", "block"],
    "grow_placement": list(PLACEMENTS),
    "grow_init": list(INITS),
    "grow_optimizer_state": list(OPTIMIZER_STATE_MODES),
    "grow_at": ["auto"],
    "moe_router_score_function": ["softmax", "sigmoid"],
    "moe_router_load_balancing_type": ["aux_loss", "seq_aux_loss", "none"],
    "moe_token_dispatcher_type": ["alltoall", "allgather"],
}

MLA_FIELDS = ("q_lora_rank", "kv_lora_rank", "qk_head_dim", "qk_pos_emb_head_dim", "v_head_dim")
MOE_FIELDS = ("num_experts", "moe_router_topk", "moe_ffn_hidden_size", "moe_shared_expert_intermediate_size",
              "moe_first_dense_layers")


def flag_fields() -> list[dataclasses.Field]:
    """The RunConfig fields that are command-line flags (what a checkpoint's config restores)."""
    return [f for f in dataclasses.fields(RunConfig) if f.metadata.get("flag", True)]


def saved_config(saved: dict) -> RunConfig:
    """The flags a checkpoint was saved with (its common state's "config"), as a RunConfig; fields
    a newer version added keep their defaults."""
    flags = {f.name for f in flag_fields()}
    return RunConfig(**{k: v for k, v in saved.items() if k in flags})


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m megatron_grow.train",
        description="Train a GPT2 / LLaMA3 / DeepSeekV3-MoE model on megatron-core. Flags follow Megatron-LM's names; "
        "every preset field can be overridden by its flag.",
    )
    for f in flag_fields():
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", "bool | None"):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
            continue
        typ = {"int": int, "int | None": int, "float": float, "float | None": float}.get(f.type, str)
        p.add_argument(flag, type=typ, default=f.default, choices=CHOICES.get(f.name), metavar=None)
    return p


class ConfigError(ValueError):
    """Raised with every problem found, one per line, each naming the flag to change. (The entry
    points print it once and exit 1.)"""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid configuration:\n  - " + "\n  - ".join(problems))


def parse_args(argv=None) -> RunConfig:
    ns = parser().parse_args(argv)
    return RunConfig(**vars(ns))


def apply_preset(cfg: RunConfig) -> list[str]:
    """Fill unset size fields from the family preset; returns problems (unknown preset)."""
    presets = FAMILIES[cfg.model]["presets"]
    if cfg.preset not in presets:
        return [f"--preset {cfg.preset!r} is not a {cfg.model} preset; choose one of {', '.join(presets)}"]
    for k, v in presets[cfg.preset].items():
        if getattr(cfg, k) is None:
            setattr(cfg, k, v)
    if cfg.untie_embeddings_and_output_weights is None:
        cfg.untie_embeddings_and_output_weights = not FAMILIES[cfg.model]["tied_embeddings"]
    if cfg.num_query_groups is None:
        cfg.num_query_groups = cfg.num_attention_heads
    if cfg.max_position_embeddings is None:
        cfg.max_position_embeddings = cfg.seq_length
    return []


def finalize(cfg: RunConfig, world_size: int, device: str, te_available: bool = False) -> RunConfig:
    """Resolve presets and defaults for ``world_size`` ranks, then validate (raises ConfigError)."""
    cfg.world_size = world_size
    problems = apply_preset(cfg)
    if cfg.bf16 is None:
        cfg.bf16 = device == "cuda"
    muon = cfg.optimizer == "muon-nsgd"
    if cfg.weight_decay is None:
        cfg.weight_decay = 0.01 if muon else 0.1
    if cfg.clip_grad is None:
        cfg.clip_grad = 0.0 if muon else 1.0
    if cfg.transformer_impl == "auto":
        cfg.transformer_impl = "transformer_engine" if device == "cuda" and te_available else "local"
    if not problems:
        if cfg.global_batch_size is None and world_size % (
                cfg.tensor_model_parallel_size * cfg.pipeline_model_parallel_size) == 0:
            cfg.global_batch_size = cfg.micro_batch_size * max(cfg.data_parallel_size, 1)
        problems = validate(cfg, device, te_available)
        if growth_requested(cfg) and not _first_tier_problems(cfg) and cfg.num_layers >= 0:
            if cfg.grow_schedule:
                tau_problems = _schedule_problems(cfg)
                planned = {} if tau_problems else schedule_step(cfg)  # the first step's growth fields
            else:
                tau_problems, planned = auto_tau(cfg)
            for k, v in planned.items():
                setattr(cfg, k, v)
            problems += tau_problems or growth_problems(cfg, device, te_available, known=problems)
    if problems:
        raise ConfigError(problems)
    return cfg


def _first_tier_problems(cfg: RunConfig) -> list[str]:
    """Sizes every other check divides by."""
    names = ("tensor_model_parallel_size", "pipeline_model_parallel_size", "micro_batch_size", "train_iters",
             "hidden_size", "num_attention_heads", "seq_length", "eval_iters", "log_interval", "eval_interval")
    return [f"--{n.replace('_', '-')} must be >= 1 (got {getattr(cfg, n)})" for n in names
            if getattr(cfg, n) is not None and getattr(cfg, n) < 1]


def validate(cfg: RunConfig, device: str, te_available: bool = False) -> list[str]:
    """Every inconsistency in ``cfg``, each as a message naming the flag and what would work. Pure:
    reads ``cfg`` and the files it names, changes nothing."""
    P = _first_tier_problems(cfg)
    if P:  # the other checks divide by these; the value ranges do not depend on them
        return P + _range_problems(cfg)
    return (model_problems(cfg) + layout_problems(cfg) + batch_problems(cfg) + data_problems(cfg)
            + device_problems(cfg, device, te_available)
            + checkpoint_problems(cfg) + schedule_problems(cfg) + _optimizer_problems(cfg, device)
            + _range_problems(cfg) + _new_layer_lr_problems(cfg) + memory_problems(cfg))


def model_problems(cfg: RunConfig) -> list[str]:
    """The model's shape, whatever the layout."""
    P = []
    if cfg.num_layers < 0:
        P.append(f"--num-layers must be >= 0 (got {cfg.num_layers})")
    if cfg.num_attention_heads % cfg.num_query_groups:
        P.append(f"--num-attention-heads {cfg.num_attention_heads} is not divisible by "
                 f"--num-query-groups {cfg.num_query_groups}")
    if cfg.kv_channels is None and cfg.hidden_size % cfg.num_attention_heads and cfg.kv_lora_rank is None:
        P.append(f"--hidden-size {cfg.hidden_size} is not divisible by --num-attention-heads "
                 f"{cfg.num_attention_heads}; change one or set --kv-channels")
    if cfg.max_position_embeddings < cfg.seq_length:
        P.append(f"--seq-length {cfg.seq_length} exceeds --max-position-embeddings {cfg.max_position_embeddings}")
    return P + _moe_problems(cfg)


def layout_problems(cfg: RunConfig) -> list[str]:
    """The model against the tensor / pipeline / data-parallel layout and the batch."""
    tp, pp, ws = cfg.tensor_model_parallel_size, cfg.pipeline_model_parallel_size, cfg.world_size
    P = []
    if ws % (tp * pp):
        P.append(f"world size {ws} is not divisible by --tensor-model-parallel-size {tp} x "
                 f"--pipeline-model-parallel-size {pp}; launch a multiple of {tp * pp} processes")
    if cfg.num_attention_heads % tp:
        P.append(f"--num-attention-heads {cfg.num_attention_heads} is not divisible by "
                 f"--tensor-model-parallel-size {tp}")
    if cfg.num_query_groups % tp:
        P.append(f"--num-query-groups {cfg.num_query_groups} is not divisible by "
                 f"--tensor-model-parallel-size {tp}")
    if cfg.ffn_hidden_size % tp:
        P.append(f"--ffn-hidden-size {cfg.ffn_hidden_size} is not divisible by --tensor-model-parallel-size {tp}")
    return P + _pipeline_problems(cfg)


def batch_problems(cfg: RunConfig) -> list[str]:
    tp, pp, ws = cfg.tensor_model_parallel_size, cfg.pipeline_model_parallel_size, cfg.world_size
    dp = cfg.data_parallel_size
    if ws % (tp * pp) == 0 and cfg.global_batch_size % (cfg.micro_batch_size * dp):
        return [f"--global-batch-size {cfg.global_batch_size} is not divisible by --micro-batch-size "
                f"{cfg.micro_batch_size} x data-parallel size {dp}; use a multiple of {cfg.micro_batch_size * dp}"]
    return []


def data_problems(cfg: RunConfig) -> list[str]:
    P = []
    if not cfg.mock_data and not cfg.data_path:
        P.append("no training data: pass --data-path PREFIX (a .bin/.idx prefix from tools/preprocess_data.py), "
                 "--data-path demo (the bundled corpus), or --mock-data")
    if cfg.data_path and cfg.data_path != "demo" and not cfg.mock_data:
        for ext in (".bin", ".idx"):
            if not os.path.isfile(cfg.data_path + ext):
                P.append(f"--data-path {cfg.data_path}: file {cfg.data_path + ext} not found; "
                         f"create it with tools/preprocess_data.py")
        if all(os.path.isfile(cfg.data_path + ext) for ext in (".bin", ".idx")):
            from megatron_grow.data.datasets import data_file_problems, token_range_problems

            P += data_file_problems(cfg.data_path)
            if not P and cfg.tokenizer_model and os.path.isfile(cfg.tokenizer_model) and cfg.vocab_size:
                P += token_range_problems(cfg.data_path, cfg.vocab_size, cfg.tokenizer_model)
        if not cfg.tokenizer_model:
            P.append("--data-path needs --tokenizer-model (the sentencepiece model it was preprocessed with)")
    if cfg.tokenizer_model and not os.path.isfile(cfg.tokenizer_model):
        P.append(f"--tokenizer-model {cfg.tokenizer_model}: file not found")
    try:
        parts = [float(x) for x in cfg.split.split(",")]
        if len(parts) != 3 or sum(parts) <= 0 or parts[0] <= 0 or min(parts) < 0:
            raise ValueError
    except ValueError:
        P.append(f"--split {cfg.split!r} must be three non-negative weights like 98,2,0 with a train part > 0")
    return P


def device_problems(cfg: RunConfig, device: str, te_available: bool) -> list[str]:
    P = []
    if cfg.device == "cpu" or device == "cpu":
        if cfg.transformer_impl == "transformer_engine":
            P.append("--transformer-impl transformer_engine needs a GPU; use --transformer-impl local on CPU")
    if cfg.transformer_impl == "transformer_engine" and not te_available and device == "cuda":
        P.append("--transformer-impl transformer_engine: Transformer Engine is not importable; "
                 "pip install -e .[gpu] or use --transformer-impl local")
    return P


def checkpoint_problems(cfg: RunConfig) -> list[str]:
    """--save / --load and their options, as far as the flags and the directories tell."""
    P = []
    if cfg.save_interval is not None and not cfg.save:
        P.append("--save-interval needs --save DIR")
    if cfg.save and _holds_checkpoint(cfg.save) and (
            not cfg.load or os.path.abspath(cfg.load) != os.path.abspath(cfg.save)):
        P.append(f"--save {cfg.save} already holds a checkpoint; pass --load {cfg.save} to resume it, "
                 f"or choose an empty --save directory (nothing there is overwritten)")
    if cfg.save:
        P += _save_dir_problems(cfg.save)
    if cfg.load and not os.path.isdir(cfg.load):
        P.append(f"--load {cfg.load}: directory not found")
    if cfg.ckpt_fallback and (not cfg.load or cfg.ckpt_step is not None):
        P.append("--ckpt-fallback picks the newest intact checkpoint of --load DIR: give --load, and not --ckpt-step")
    if cfg.ckpt_step is not None and (not cfg.load or cfg.ckpt_step < 0):
        P.append(f"--ckpt-step {cfg.ckpt_step} picks an iteration of --load DIR: give --load and an iteration >= 0")
    return P


def schedule_problems(cfg: RunConfig) -> list[str]:
    """The LR schedule's lengths."""
    P = []
    warmup = cfg.warmup_iters
    if warmup >= cfg.train_iters:
        P.append(f"warmup of {warmup} iterations (--lr-warmup-iters / --lr-warmup-fraction) must be shorter "
                 f"than --train-iters {cfg.train_iters}")
    decay = cfg.wsd_decay_iters
    if cfg.lr_decay_style == "wsd" and warmup + decay > cfg.train_iters:
        P.append(f"--lr-decay-style wsd: warmup {warmup} + decay {decay} iterations exceed --train-iters "
                 f"{cfg.train_iters}; shorten --lr-wsd-decay-iters / --lr-wsd-decay-fraction")
    if not 0 <= cfg.lr_warmup_fraction < 1:
        P.append(f"--lr-warmup-fraction {cfg.lr_warmup_fraction} must be in [0, 1)")
    if not 0 <= cfg.lr_wsd_decay_fraction <= 1:
        P.append(f"--lr-wsd-decay-fraction {cfg.lr_wsd_decay_fraction} must be in [0, 1]")
    return P


def _holds_checkpoint(root: str) -> bool:
    """A tracker or a complete iter_N directory (the tracker alone is not enough: it can be lost)."""
    return os.path.isdir(root) and any(d == "latest_checkpointed_iteration.txt" or (d.startswith("iter_")
                                                                                     and d[5:].isdigit())
                                       for d in os.listdir(root))


def _save_dir_problems(save: str) -> list[str]:
    """--save must be a directory this process can create and write (checked now, not at the first
    save after the work is done)."""
    if os.path.exists(save) and not os.path.isdir(save):
        return [f"--save {save} is a file, not a directory"]
    probe = os.path.abspath(save)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        return [f"--save {save} cannot be created: {probe} is a file"]
    if not os.access(probe, os.W_OK | os.X_OK):
        return [f"--save {save}: {probe} is not writable by this user; choose a writable directory"]
    return []


def _range_problems(cfg: RunConfig) -> list[str]:
    """Numeric flags outside the range where they mean something (each would fail later or train
    silently wrong: a negative --clip-grad ascends the gradient, --lr nan trains nothing)."""
    def bad(name, ok, want):
        v = getattr(cfg, name)
        return [] if v is None or (math.isfinite(v) and ok(v)) else [f"--{name.replace('_', '-')} {v} must be {want}"]

    P = bad("lr", lambda v: v > 0, "a finite number > 0")
    P += bad("min_lr", lambda v: 0 <= v <= cfg.lr if math.isfinite(cfg.lr) else True,
             f"in [0, --lr {cfg.lr}] (the LR the schedule decays to)")
    P += bad("clip_grad", lambda v: v >= 0, ">= 0 (0: no clipping)")
    P += bad("weight_decay", lambda v: v >= 0, "a finite number >= 0")
    P += bad("adam_beta1", lambda v: 0 <= v < 1, "in [0, 1)")
    P += bad("adam_beta2", lambda v: 0 <= v < 1, "in [0, 1)")
    P += bad("adam_eps", lambda v: v > 0, "> 0")
    P += bad("init_method_std", lambda v: v > 0, "> 0")
    P += bad("hidden_dropout", lambda v: 0 <= v < 1, "in [0, 1)")
    P += bad("attention_dropout", lambda v: 0 <= v < 1, "in [0, 1)")
    P += bad("loss_spike_factor", lambda v: v > 1, "> 1 (a step is skipped when its loss exceeds this multiple of "
                                                   "the recent mean)")
    P += bad("exit_duration_in_mins", lambda v: v > 0, "> 0 (minutes of wall-clock time before saving and stopping)")
    P += bad("distributed_timeout_minutes", lambda v: v > 0, "> 0 (minutes a collective may wait for a rank)")
    for name in ("vocab_size", "save_interval", "exit_interval", "max_skipped_steps", "keep_last_k",
                 "recompute_num_layers", "ddp_bucket_size"):
        v = getattr(cfg, name)
        if v is not None and v < 1:
            P.append(f"--{name.replace('_', '-')} must be >= 1 (got {v})")
    return P


def _new_layer_lr_problems(cfg: RunConfig) -> list[str]:
    P = []
    if not (math.isfinite(cfg.grow_new_layer_lr_mult) and cfg.grow_new_layer_lr_mult >= 0):
        P.append(f"--grow-new-layer-lr-mult {cfg.grow_new_layer_lr_mult} must be a finite number >= 0 "
                 "(1: the shared LR; 0 with --grow-new-layer-lr-iters N: a re-warmup of the new layers)")
    if cfg.grow_new_layer_lr_iters < 0:
        P.append(f"--grow-new-layer-lr-iters {cfg.grow_new_layer_lr_iters} must be >= 0 (0: the multiplier "
                 "holds to the end of the run)")
    if (cfg.grow_new_layer_lr_mult != 1 or cfg.grow_new_layer_lr_iters) and not growth_requested(cfg):
        P.append("--grow-new-layer-lr-mult / --grow-new-layer-lr-iters act on the layers a growth inside this run "
                 "adds; give --grow-to-layers and --grow-at-iter (an offline-grown checkpoint has no new layers "
                 "to this run)")
    if cfg.grow_new_layer_lr_mult == 0 and not cfg.grow_new_layer_lr_iters:
        P.append("--grow-new-layer-lr-mult 0 without --grow-new-layer-lr-iters would freeze the new layers; "
                 "give --grow-new-layer-lr-iters N for a re-warmup over N iterations")
    return P


def _moe_problems(cfg: RunConfig) -> list[str]:
    """DeepSeekV3 (MLA + MoE) flags: only on that family, and consistent with the layout."""
    fam, tp, pp, ep = FAMILIES[cfg.model], cfg.tensor_model_parallel_size, cfg.pipeline_model_parallel_size, \
        cfg.expert_model_parallel_size
    if not fam.get("moe"):
        given = [f for f in MLA_FIELDS + MOE_FIELDS if getattr(cfg, f) is not None]
        if ep != 1:
            given.append("expert_model_parallel_size")
        return [f"--{f.replace('_', '-')} is a deepseek-v3 flag; --model {cfg.model} has no experts or latent "
                f"attention (use --model deepseek-v3)" for f in given]
    P = []
    for f in MLA_FIELDS[1:] + MOE_FIELDS[:3]:
        if getattr(cfg, f) is None or getattr(cfg, f) < 1:
            P.append(f"--{f.replace('_', '-')} must be >= 1 (got {getattr(cfg, f)})")
    if P:
        return P
    if ep < 1:
        return [f"--expert-model-parallel-size must be >= 1 (got {ep})"]
    if not 1 <= cfg.moe_router_topk <= cfg.num_experts:
        P.append(f"--moe-router-topk {cfg.moe_router_topk} must lie in 1..--num-experts {cfg.num_experts}")
    if cfg.num_experts % ep:
        P.append(f"--num-experts {cfg.num_experts} is not divisible by --expert-model-parallel-size {ep}")
    if cfg.world_size % (tp * pp * ep):
        P.append(f"world size {cfg.world_size} is not divisible by --tensor-model-parallel-size {tp} x "
                 f"--pipeline-model-parallel-size {pp} x --expert-model-parallel-size {ep} (experts are split "
                 f"over the data-parallel ranks of each TP x PP position); launch a multiple of {tp * pp * ep}")
    for f in ("moe_ffn_hidden_size", "moe_shared_expert_intermediate_size"):
        if (getattr(cfg, f) or 0) % tp:
            P.append(f"--{f.replace('_', '-')} {getattr(cfg, f)} is not divisible by --tensor-model-parallel-size {tp}")
    if (cfg.moe_first_dense_layers or 0) < 0 or cfg.moe_layer_freq < 1:
        P.append("--moe-first-dense-layers must be >= 0 and --moe-layer-freq >= 1")
    P += _group_routing_problems(cfg)
    if cfg.moe_router_topk_scaling_factor is not None and not cfg.moe_router_topk_scaling_factor > 0:
        P.append(f"--moe-router-topk-scaling-factor must be > 0 (got {cfg.moe_router_topk_scaling_factor})")
    if cfg.moe_router_enable_expert_bias and cfg.moe_router_score_function != "sigmoid":
        P.append("--moe-router-enable-expert-bias needs --moe-router-score-function sigmoid "
                 "(or --no-moe-router-enable-expert-bias)")
    return P


RECOMPUTE_MODULES = ("core_attn", "mlp", "layernorm", "moe", "shared_experts", "mla_up_proj")
MOE_RECOMPUTE_MODULES = ("moe", "shared_experts", "mla_up_proj")  # deepseek-v3's modules
# recomputed by megatron-core 0.16's CheckpointWithoutOutput, which calls Transformer Engine's FP8 state
TE_RECOMPUTE_MODULES = ("layernorm", "mla_up_proj")


def sequence_parallel(cfg: RunConfig, tp: int | None = None) -> bool:
    """Whether the sequence is split over TP ranks at TP size ``tp`` (default: the run's): with
    --sequence-parallel, and always for MoE with TP (megatron-core requires it there)."""
    tp = cfg.tensor_model_parallel_size if tp is None else tp
    return tp > 1 and (cfg.sequence_parallel or bool(FAMILIES[cfg.model].get("moe")))


def memory_problems(cfg: RunConfig) -> list[str]:
    """Sequence parallelism, recomputation and overlap flags (megatron's rules, as flags)."""
    P, tp = [], cfg.tensor_model_parallel_size
    if sequence_parallel(cfg) and cfg.seq_length % tp:
        P.append(f"--seq-length {cfg.seq_length} is not divisible by --tensor-model-parallel-size {tp} "
                 f"(sequence parallelism{' (on for MoE with TP)' if cfg.num_experts else ''} splits the "
                 f"sequence over TP ranks)")
    g, method, n = cfg.recompute_granularity, cfg.recompute_method, cfg.recompute_num_layers
    if g == "full" and (method is None or n is None):
        P.append("--recompute-granularity full needs --recompute-method uniform|block and --recompute-num-layers N "
                 "(uniform 1: every layer)")
    if g != "full" and (method is not None or n is not None):
        P.append("--recompute-method / --recompute-num-layers apply to --recompute-granularity full only")
    if cfg.recompute_modules is not None:
        mods = set(recompute_modules(cfg))
        if g != "selective":
            P.append("--recompute-modules applies to --recompute-granularity selective only")
        elif not mods or mods - set(RECOMPUTE_MODULES):
            P.append(f"--recompute-modules {cfg.recompute_modules!r}: choose comma-separated from "
                     f"{', '.join(RECOMPUTE_MODULES)}")
        elif mods & set(MOE_RECOMPUTE_MODULES) and not cfg.num_experts:
            P.append(f"--recompute-modules {', '.join(MOE_RECOMPUTE_MODULES)} are deepseek-v3's (MoE, MLA) modules")
        elif mods & set(TE_RECOMPUTE_MODULES) and cfg.transformer_impl != "transformer_engine":
            P.append(f"--recompute-modules {', '.join(TE_RECOMPUTE_MODULES)} need Transformer Engine (megatron-core "
                     f"recomputes them through it): use core_attn, mlp, moe or shared_experts with --transformer-impl "
                     f"local")
    if cfg.overlap_param_gather:
        P.append("--overlap-param-gather needs megatron-core's distributed optimizer; this trainer's own "
                 "(--use-distributed-optimizer, which Muon-NSGD needs) broadcasts the updated weights after the "
                 "step: drop the flag")
    return P


def recompute_modules(cfg: RunConfig) -> list[str]:
    return [m.strip() for m in (cfg.recompute_modules or "core_attn").split(",") if m.strip()]


def _group_routing_problems(cfg: RunConfig) -> list[str]:
    """Group-limited routing (DeepSeek-V3's node-limited routing): groups are ranked by the sum of their
    top (topk / group-topk) scores, so group-topk must divide into topk, and the chosen groups must hold
    topk experts."""
    G, g, k, E = cfg.moe_router_num_groups, cfg.moe_router_group_topk, cfg.moe_router_topk, cfg.num_experts
    if G is None and g is None:
        return []
    if G is None or g is None:
        return ["--moe-router-num-groups and --moe-router-group-topk go together (group-limited routing)"]
    if not (G >= 1 and E % G == 0):
        return [f"--moe-router-num-groups {G} must divide --num-experts {E}"]
    if not (1 <= g <= G and k % g == 0 and g * (E // G) >= k):
        return [f"--moe-router-group-topk {g} must lie in 1..--moe-router-num-groups {G}, divide --moe-router-topk "
                f"{k}, and its groups must hold {k} experts (each group has {E // G})"]
    return []


def ns_coefficients(cfg: RunConfig) -> tuple[float, float, float]:
    return tuple(float(x) for x in cfg.muon_ns_coefficients.split(","))


def _optimizer_problems(cfg: RunConfig, device: str) -> list[str]:
    P = []
    if cfg.optimizer == "muon-nsgd":
        if not 0 <= cfg.muon_momentum < 1:
            P.append(f"--muon-momentum {cfg.muon_momentum} must be in [0, 1)")
        if cfg.muon_ns_steps < 1:
            P.append(f"--muon-ns-steps must be >= 1 (got {cfg.muon_ns_steps})")
        try:
            if len(ns_coefficients(cfg)) != 3:
                raise ValueError
        except ValueError:
            P.append(f"--muon-ns-coefficients {cfg.muon_ns_coefficients!r} must be three numbers a,b,c "
                     f"(quintic default 3.4445,-4.7750,2.0315)")
        from megatron_grow.optim.newton_schulz import unavailable_reason

        why = cfg.ns_backend != "auto" and unavailable_reason(cfg.ns_backend, torch.device(device))
        if why:
            P.append(f"--ns-backend {cfg.ns_backend}: {why}; use --ns-backend auto or torch")
    if cfg.mup and not cfg.mup_base_hidden_size:
        P.append("--mup needs --mup-base-hidden-size (the width the hyperparameters were tuned at)")
    if (cfg.mup_base_hidden_size or cfg.mup_base_num_layers) and not cfg.mup:
        P.append("--mup-base-hidden-size / --mup-base-num-layers take effect only with --mup; add --mup")
    for name in ("mup_base_hidden_size", "mup_base_num_layers"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 1:
            P.append(f"--{name.replace('_', '-')} must be >= 1 (got {getattr(cfg, name)})")
    return P


def stage_layers(cfg: RunConfig) -> list[int] | None:
    """--pipeline-layers as a list of ints (None when not given)."""
    return [int(x) for x in cfg.pipeline_layers.split(",")] if cfg.pipeline_layers else None


def _pipeline_problems(cfg: RunConfig) -> list[str]:
    pp, L = cfg.pipeline_model_parallel_size, cfg.num_layers
    first, last = cfg.decoder_first_pipeline_num_layers, cfg.decoder_last_pipeline_num_layers
    if cfg.pipeline_layers:
        try:
            stages = stage_layers(cfg)
        except ValueError:
            return [f"--pipeline-layers {cfg.pipeline_layers!r} must be comma-separated layer counts, one per stage"]
        if first is not None or last is not None:
            return ["--pipeline-layers replaces --decoder-first/last-pipeline-num-layers; give one or the other"]
        if len(stages) != pp or sum(stages) != L or min(stages) < 1:
            return [f"--pipeline-layers {cfg.pipeline_layers} must give {pp} stage(s) (--pipeline-model-parallel-size) "
                    f"of at least one layer each, adding up to --num-layers {L}"]
        return []
    if pp == 1:
        if first is not None or last is not None:
            return ["--decoder-first/last-pipeline-num-layers need --pipeline-model-parallel-size > 1"]
        return []
    if L == 0:
        return [f"--num-layers 0 has no layers to split over --pipeline-model-parallel-size {pp}; "
                "use --pipeline-model-parallel-size 1"]
    rest, middle = L - (first or 0) - (last or 0), pp - (first is not None) - (last is not None)
    if first is None and last is None and L % pp:
        return [f"--num-layers {L} does not split evenly over --pipeline-model-parallel-size {pp}: "
                f"use a multiple of {pp} layers, or place the remainder with "
                f"--decoder-first-pipeline-num-layers / --decoder-last-pipeline-num-layers"]
    if rest < 0 or (middle == 0 and rest != 0) or (middle > 0 and (rest % middle or rest == 0)):
        return [f"--decoder-first-pipeline-num-layers {first} / --decoder-last-pipeline-num-layers {last} "
                f"leave {rest} of --num-layers {L} layers for {middle} middle stage(s); they must split "
                f"evenly with at least one layer per stage"]
    return []


def growth_requested(cfg: RunConfig) -> bool:
    return (cfg.grow_to_layers is not None or cfg.grow_at_iter is not None or cfg.grow_at_fraction is not None
            or cfg.grow_at is not None or cfg.grow_schedule is not None)


LAYOUT_KEYS = {"tp": "grow_tensor_model_parallel_size", "pp": "grow_pipeline_model_parallel_size",
               "ep": "grow_expert_model_parallel_size"}
SCHEDULE_FIELDS = ("grow_to_layers", "grow_at_iter", *LAYOUT_KEYS.values())


def grow_steps(spec: str) -> list[dict]:
    """--grow-schedule "4@1050,8@1275:tp2" -> one dict of growth fields per step (ValueError naming
    the entry that does not parse)."""
    steps = []
    for entry in spec.split(","):
        head, *layout = entry.strip().split(":")
        try:
            layers, at = (int(x) for x in head.split("@"))
            step = {"grow_to_layers": layers, "grow_at_iter": at}
            for item in layout:
                if item[:2] not in LAYOUT_KEYS:
                    raise ValueError
                step[LAYOUT_KEYS[item[:2]]] = int(item[2:])
        except ValueError:
            raise ValueError(f"--grow-schedule {spec}: cannot read {entry!r}; write LAYERS@ITER[:tpN][:ppN][:epN] "
                             "per growth, comma-separated, e.g. 4@1050,8@1275:tp2") from None
        steps.append(step)
    return steps


def schedule_step(cfg: RunConfig) -> dict:
    """The growth fields of the next step of --grow-schedule after depth cfg.num_layers (the fields
    that say no growth is pending when every step is done)."""
    nxt = next((s for s in grow_steps(cfg.grow_schedule) if s["grow_to_layers"] > cfg.num_layers), None)
    return {k: None for k in SCHEDULE_FIELDS} | (nxt or {"grow_to_layers": cfg.num_layers})


def _schedule_problems(cfg: RunConfig) -> list[str]:
    """--grow-schedule against the single-growth flags, and its steps' order."""
    single = (*SCHEDULE_FIELDS, "grow_at_fraction", "grow_at", "grow_pipeline_layers")
    given = [f"--{k.replace('_', '-')}" for k in single if getattr(cfg, k) is not None]
    if given:
        return [f"--grow-schedule sets every growth's depth, iteration and layout; drop {', '.join(given)} "
                "(a layout after a step: LAYERS@ITER:tpN:ppN:epN)"]
    try:
        steps = grow_steps(cfg.grow_schedule)
    except ValueError as e:
        return [str(e)]
    layers = [cfg.num_layers] + [s["grow_to_layers"] for s in steps]
    iters = [s["grow_at_iter"] for s in steps]
    if any(b <= a for seq in (layers, iters) for a, b in zip(seq, seq[1:], strict=False)):
        return [f"--grow-schedule {cfg.grow_schedule}: each step must grow deeper than the one before (from "
                f"--num-layers {cfg.num_layers}) at a later iteration"]
    return []


def auto_tau(cfg: RunConfig) -> tuple[list[str], dict]:
    """--grow-at auto: (problems, the fields that set tau from the pilot pair: tau = T_stable - t_mix).
    Pure: ``finalize`` applies the fields."""
    if cfg.grow_at != "auto":
        return (["--grow-pilot-metrics takes effect only with --grow-at auto"] if cfg.grow_pilot_metrics else []), {}
    from megatron_grow.growth import tau

    if cfg.grow_at_iter is not None or cfg.grow_at_fraction is not None:
        return ["--grow-at auto chooses tau itself; drop --grow-at-iter / --grow-at-fraction"], {}
    files = (cfg.grow_pilot_metrics or "").split(",")
    if len(files) != 2 or not all(files):
        return ["--grow-at auto needs --grow-pilot-metrics FIXED.jsonl,GROWN.jsonl (the metrics of a fixed-size "
                "pilot and of one grown right after warmup; see tools/plan_growth.py)"], {}
    if cfg.lr_decay_style != "wsd":
        return [f"--grow-at auto plans tau = T_stable - t_mix for --lr-decay-style wsd, not {cfg.lr_decay_style}; "
                "use wsd or give --grow-at-iter"], {}
    try:
        plan = tau.plan_from_pilot(*files, cfg.train_iters, cfg.warmup_iters, cfg.wsd_stable_end,
                                   cfg.grow_mix_tolerance)
    except tau.PlanError as e:
        return [f"--grow-at auto (--grow-pilot-metrics): {e}"], {}
    return [], {"grow_at_iter": plan["tau"], "grow_at": None,
                "grow_plan_text": "--grow-at auto: " + tau.describe(plan).replace("\n", "\n  ")}


def grow_iteration(cfg: RunConfig) -> int | None:
    """tau: the iteration after which the model grows (None: no growth)."""
    if cfg.grow_at_iter is not None:
        return cfg.grow_at_iter
    if cfg.grow_at_fraction is not None:
        return int(round(cfg.grow_at_fraction * cfg.train_iters))
    return None


def grown_config(cfg: RunConfig) -> RunConfig:
    """The config of the model after growth: target depth and layout, everything else unchanged
    (with --grow-schedule, the next step's growth pending)."""
    grown = dataclasses.replace(
        cfg, num_layers=cfg.grow_to_layers, grown_from_layers=cfg.num_layers, grown_at_iter=grow_iteration(cfg),
        tensor_model_parallel_size=cfg.grow_tensor_model_parallel_size or cfg.tensor_model_parallel_size,
        pipeline_model_parallel_size=cfg.grow_pipeline_model_parallel_size or cfg.pipeline_model_parallel_size,
        expert_model_parallel_size=cfg.grow_expert_model_parallel_size or cfg.expert_model_parallel_size,
        decoder_first_pipeline_num_layers=None, decoder_last_pipeline_num_layers=None,
        pipeline_layers=cfg.grow_pipeline_layers,
    )
    return dataclasses.replace(grown, **schedule_step(grown)) if cfg.grow_schedule else grown


def growth_problems(cfg: RunConfig, device: str, te_available: bool = False, known=()) -> list[str]:
    """Problems of the growth flags and of the grown model's layout, leaving out those in ``known``
    (the un-grown config's, which the grown one repeats); with --grow-schedule, of each step in turn."""
    if not cfg.grow_schedule:
        return _one_growth_problems(cfg, device, te_available, known)
    P = []
    names = {"--grow-tensor-model-parallel-size ": ":tp", "--grow-pipeline-model-parallel-size ": ":pp",
             "--grow-expert-model-parallel-size ": ":ep", " (--grow-at-iter / --grow-at-fraction)": ""}
    while not P and cfg.num_layers < cfg.grow_to_layers:
        P = [f"--grow-schedule step {cfg.grow_to_layers}@{cfg.grow_at_iter}: "
             + functools.reduce(lambda m, kv: m.replace(*kv), names.items(), p)
             for p in _one_growth_problems(cfg, device, te_available, known)]
        cfg = grown_config(cfg)
    return P


def _one_growth_problems(cfg: RunConfig, device: str, te_available: bool, known) -> list[str]:
    from megatron_grow.growth.plan import problems as plan_problems

    P = []
    tau = grow_iteration(cfg)
    if cfg.grow_to_layers is None:
        return ["--grow-at-iter / --grow-at-fraction need --grow-to-layers L (the target depth)"]
    if tau is None:
        return ["--grow-to-layers needs --grow-at-iter N or --grow-at-fraction f (when to grow)"]
    if cfg.grow_at_iter is not None and cfg.grow_at_fraction is not None:
        P.append("give one of --grow-at-iter and --grow-at-fraction, not both")
    if not 0 < tau < cfg.train_iters:
        P.append(f"growth at iteration {tau} (--grow-at-iter / --grow-at-fraction) must lie inside "
                 f"1..{cfg.train_iters - 1} (--train-iters {cfg.train_iters})")
    from megatron_grow.models import growth_kinds

    P += plan_problems(cfg.num_layers, cfg.grow_to_layers, cfg.grow_placement, cfg.grow_init,
                       kinds=growth_kinds(cfg, cfg.num_layers, cfg.grow_to_layers))
    if not P:
        P += [f"after growth: {p}".replace("--tensor-model-parallel-size", "--grow-tensor-model-parallel-size")
              .replace("--pipeline-model-parallel-size", "--grow-pipeline-model-parallel-size")
              .replace("--expert-model-parallel-size", "--grow-expert-model-parallel-size")
              .replace("--num-layers", "--grow-to-layers").replace("--pipeline-layers", "--grow-pipeline-layers")
              for p in validate(grown_config(cfg), device, te_available)
              if "already holds a checkpoint" not in p and p not in known]
    return P
