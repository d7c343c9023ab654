"""One typed RunConfig, parsed from Megatron-style flags: the flags' vocabulary (group, help, default,
choices), --help and flag_table(), ConfigError, the values derived from fields alone, and the checks
that need no component's knowledge. It imports nothing of this package (and not torch): each
component checks its own flags (``*_problems`` beside its code), and megatron_grow/finalize.py joins
them into one ConfigError."""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field

NOT_A_FLAG = {"flag": False}  # field metadata of RunConfig fields that no command-line flag sets

# the groups of --help and of flag_table(), in this order: name -> title
GROUPS = {
    "model": "model",
    "parallelism": "parallelism and memory",
    "data": "data",
    "training": "training (schedule, precision, device)",
    "optimizer": "optimizer (AdamW, Muon-NSGD, muP)",
    "growth": "progressive growth",
    "checkpoints": "checkpoints, resuming and stopping",
    "metrics": "metrics and evaluation",
}
# the families and their presets (megatron_grow/models), as --model and --preset name them (tests/test_help.py
# checks that they agree)
PRESET_NAMES = "gpt2: tiny, 124m, 7b; llama3: tiny, 1b, 8b; deepseek-v3: tiny, small, 16b-a2.6b"


def flag(default, group: str, help: str, shown: str | None = None):
    """A RunConfig field that is a command-line flag, with its --help group and one-line help; ``shown``
    says what the default means where the value alone does not (None: derived, or off)."""
    return field(default=default, metadata={"group": group, "help": help, "shown": shown})


@dataclass
class RunConfig:
    # model
    model: str = flag("llama3", "model", "model family")
    preset: str = flag("tiny", "model", f"size preset of the family ({PRESET_NAMES})")
    num_layers: int | None = flag(None, "model", "transformer layers", "the preset's")
    hidden_size: int | None = flag(None, "model", "hidden width", "the preset's")
    ffn_hidden_size: int | None = flag(None, "model", "MLP hidden width (deepseek-v3: of its dense layers)",
                                       "the preset's")
    num_attention_heads: int | None = flag(None, "model", "attention heads", "the preset's")
    num_query_groups: int | None = flag(None, "model", "key/value head groups (grouped-query attention)",
                                        "the preset's, else --num-attention-heads")
    kv_channels: int | None = flag(None, "model", "attention head dimension", "--hidden-size / --num-attention-heads")
    untie_embeddings_and_output_weights: bool | None = flag(
        None, "model", "an LM head of its own instead of one shared with the embedding",
        "the preset's, else the family's: untied for llama3 and deepseek-v3, tied for gpt2")
    # deepseek-v3 only (its presets fill them): multi-latent attention ...
    q_lora_rank: int | None = flag(None, "model", "deepseek-v3 MLA: query compression rank (0: a plain q projection)",
                                   "the preset's")
    kv_lora_rank: int | None = flag(None, "model", "deepseek-v3 MLA: key/value compression rank", "the preset's")
    qk_head_dim: int | None = flag(None, "model", "deepseek-v3 MLA: per-head query/key dimension without RoPE",
                                   "the preset's")
    qk_pos_emb_head_dim: int | None = flag(None, "model", "deepseek-v3 MLA: per-head RoPE dimension of queries and "
                                           "of the one key head all heads share", "the preset's")
    v_head_dim: int | None = flag(None, "model", "deepseek-v3 MLA: per-head value dimension", "the preset's")
    # ... and mixture of experts
    num_experts: int | None = flag(None, "model", "deepseek-v3 MoE: routed experts per MoE layer", "the preset's")
    moe_router_topk: int | None = flag(None, "model", "deepseek-v3 MoE: routed experts per token", "the preset's")
    moe_ffn_hidden_size: int | None = flag(None, "model", "deepseek-v3 MoE: hidden width of each routed expert",
                                           "the preset's")
    moe_shared_expert_intermediate_size: int | None = flag(
        None, "model", "deepseek-v3 MoE: hidden width of the shared expert (0: no shared expert)", "the preset's")
    moe_first_dense_layers: int | None = flag(None, "model", "deepseek-v3 MoE: the first N layers are dense",
                                              "the preset's")
    moe_layer_freq: int = flag(1, "model", "deepseek-v3 MoE: after the first dense layers, every N-th layer is MoE")
    moe_router_score_function: str = flag("sigmoid", "model", "deepseek-v3 MoE: the router's score function")
    moe_router_topk_scaling_factor: float | None = flag(
        None, "model", "deepseek-v3 MoE: the routed experts' weights are multiplied by this (DeepSeek-V3: 2.5)",
        "the preset's, else unscaled")
    moe_router_num_groups: int | None = flag(None, "model", "deepseek-v3 MoE: group-limited routing: the experts "
                                             "in this many equal groups", "the preset's, else ungrouped")
    moe_router_group_topk: int | None = flag(None, "model", "deepseek-v3 MoE: group-limited routing: a token's "
                                             "experts from its best this many groups", "the preset's, else ungrouped")
    moe_router_load_balancing_type: str = flag("seq_aux_loss", "model", "deepseek-v3 MoE: auxiliary load-balancing "
                                               "loss per sequence (seq_aux_loss), per micro-batch (aux_loss) or none")
    moe_aux_loss_coeff: float = flag(1e-4, "model", "deepseek-v3 MoE: weight of the load-balancing loss")
    moe_router_enable_expert_bias: bool = flag(True, "model", "deepseek-v3 MoE: aux-loss-free balancing (DeepSeek-V3's "
                                               "per-expert bias on the choice scores; needs sigmoid scores)")
    moe_router_bias_update_rate: float = flag(1e-3, "model", "deepseek-v3 MoE: step of the expert bias against "
                                              "the load (not a gradient)")
    moe_z_loss_coeff: float | None = flag(None, "model", "deepseek-v3 MoE: weight of the router z-loss", "off")
    moe_token_dispatcher_type: str = flag("alltoall", "model", "deepseek-v3 MoE: token dispatch between "
                                          "expert-parallel ranks")
    seq_length: int | None = flag(None, "model", "tokens per sample", "the preset's")
    max_position_embeddings: int | None = flag(None, "model", "longest sequence the positions cover (gpt2's learned "
                                               "position table; >= --seq-length)", "the preset's, else --seq-length")
    vocab_size: int | None = flag(None, "model", "vocabulary size (with --data-path the tokenizer's size replaces "
                                  "it)", "the preset's")
    init_method_std: float = flag(0.02, "model", "std of the normal weight init (residual output projections: "
                                  "divided by sqrt(2 x layers))")
    hidden_dropout: float = flag(0.0, "model", "dropout probability of the hidden states")
    attention_dropout: float = flag(0.0, "model", "dropout probability of the attention weights")
    # platform
    device: str = flag("auto", "training", "auto: CUDA when torch sees a GPU, else cpu (on gloo)")
    transformer_impl: str = flag("auto", "training", "layers: Transformer Engine's or megatron-core's local ones "
                                 "(auto: Transformer Engine on GPU when importable)")
    bf16: bool | None = flag(None, "training", "bf16 parameters with fp32 master weights", "on on GPU, off on CPU")
    # parallelism
    tensor_model_parallel_size: int = flag(1, "parallelism", "tensor-parallel size (TP)")
    pipeline_model_parallel_size: int = flag(1, "parallelism", "pipeline-parallel size (PP, 1F1B over the "
                                             "micro-batches); data parallel over the remaining ranks")
    expert_model_parallel_size: int = flag(1, "parallelism", "deepseek-v3: expert-parallel size (EP, experts split "
                                           "over the data-parallel ranks)")
    decoder_first_pipeline_num_layers: int | None = flag(None, "parallelism", "layers on the first pipeline stage "
                                                         "(an uneven split)", "an even split")
    decoder_last_pipeline_num_layers: int | None = flag(None, "parallelism", "layers on the last pipeline stage "
                                                        "(an uneven split)", "an even split")
    pipeline_layers: str | None = flag(None, "parallelism", "explicit per-stage layer counts, e.g. 1,3",
                                       "an even split")
    sequence_parallel: bool = flag(False, "parallelism", "with TP > 1, split the sequence over the TP ranks outside "
                                   "attention and MLP (always on for MoE with TP)")
    overlap_grad_reduce: bool = flag(False, "parallelism", "megatron DDP: all-reduce gradient buckets during the "
                                     "last micro-batch's backward")
    ddp_bucket_size: int | None = flag(None, "parallelism", "parameters per gradient-reduction bucket",
                                       "megatron's, max(40M, 1M x data-parallel size)")
    overlap_param_gather: bool = flag(False, "parallelism", "megatron-core's distributed optimizer only: refused "
                                      "here, with the reason")
    recompute_granularity: str | None = flag(None, "parallelism", "activation recomputation in backward: full "
                                             "(whole layers) or selective (--recompute-modules of each layer)", "off")
    recompute_method: str | None = flag(None, "parallelism", "full recomputation: uniform (chunks of "
                                        "--recompute-num-layers layers) or block (the first N of each stage)",
                                        "none; full needs it")
    recompute_num_layers: int | None = flag(None, "parallelism", "full recomputation: the N of --recompute-method",
                                            "none; full needs it")
    recompute_modules: str | None = flag(None, "parallelism", "selective recomputation: comma-separated from "
                                         "core_attn, mlp, layernorm, moe, shared_experts, mla_up_proj", "core_attn")
    # training
    micro_batch_size: int = flag(4, "training", "samples per micro-batch on each data-parallel rank")
    global_batch_size: int | None = flag(None, "training", "samples per iteration over all ranks (micro-batch x DP "
                                         "x micro-batches)", "--micro-batch-size x data-parallel size")
    train_iters: int = flag(100, "training", "training iterations")
    seed: int = flag(1234, "training", "seed of the weights (each a function of seed and parameter name, in any "
                     "layout) and of the data order")
    optimizer: str = flag("adam", "optimizer", "adam (AdamW) or muon-nsgd (Muon on hidden matrices, normalised SGD "
                          "on the rest)")
    lr: float = flag(3e-3, "training", "peak learning rate")
    min_lr: float = flag(0.0, "training", "learning rate the schedule decays to")
    lr_decay_style: str = flag("wsd", "training", "LR schedule after warmup (wsd: warmup-stable-decay)")
    lr_warmup_iters: int | None = flag(None, "training", "linear warmup iterations",
                                       "--lr-warmup-fraction x --train-iters")
    lr_warmup_fraction: float = flag(0.02, "training", "warmup as a fraction of --train-iters")
    lr_wsd_decay_iters: int | None = flag(None, "training", "wsd: iterations of the final decay",
                                          "--lr-wsd-decay-fraction x --train-iters")
    lr_wsd_decay_fraction: float = flag(0.1, "training", "wsd: the final decay as a fraction of --train-iters")
    lr_wsd_decay_style: str = flag("linear", "training", "wsd: shape of the final decay")
    weight_decay: float | None = flag(None, "optimizer", "decoupled weight decay (not on norms and biases)",
                                      "0.1 for adam, 0.01 for muon-nsgd")
    adam_beta1: float = flag(0.9, "optimizer", "AdamW beta1")
    adam_beta2: float = flag(0.95, "optimizer", "AdamW beta2")
    adam_eps: float = flag(1e-8, "optimizer", "AdamW epsilon")
    clip_grad: float | None = flag(None, "optimizer", "clip the global gradient norm to this (0: off)",
                                   "1.0 for adam, 0 for muon-nsgd")
    max_skipped_steps: int = flag(10, "training", "stop (exit status 3) after this many skipped updates in a row (a "
                                  "non-finite loss or grad norm, or a loss spike, skips an update)")
    loss_spike_factor: float | None = flag(None, "training", "also skip an update whose loss exceeds this many times "
                                           "the mean of the last 20 applied steps", "off")
    # Muon-NSGD (megatron_grow/optim/muon.py)
    muon_momentum: float = flag(0.95, "optimizer", "Muon-NSGD: momentum")
    muon_nesterov: bool = flag(True, "optimizer", "Muon-NSGD: Nesterov momentum")
    muon_ns_steps: int = flag(5, "optimizer", "Muon-NSGD: Newton-Schulz iterations")
    muon_ns_coefficients: str = flag("3.4445,-4.7750,2.0315", "optimizer", "Muon-NSGD: Newton-Schulz polynomial "
                                     "coefficients a,b,c")
    # match_adamw: one shared LR fits Muon and NSGD (benchmarks/optimizer_sweep.py)
    muon_scale_mode: str = flag("match_adamw", "optimizer", "Muon-NSGD update scale: match_adamw (AdamW's update "
                                "RMS, so AdamW LRs carry over) or spectral (sqrt(max(1, rows/cols)))")
    muon_split_qkv: str = flag("off", "optimizer", "Muon-NSGD: orthogonalise the fused QKV matrix whole (off), Q, K "
                               "and V apart (qkv), or each GQA group's apart (group)")
    muon_tp_mode: str = flag("duplicated", "optimizer", "Muon-NSGD with TP: gather each sharded matrix (duplicated), "
                             "Newton-Schulz on the shards (distributed), or each shard alone, approximate (blockwise)")
    muon_dp_spread: str = flag("auto", "optimizer", "Muon-NSGD: each matrix orthogonalised by one data-parallel rank, "
                               "shared in one all-reduce (auto: on when DP > 1)")
    use_distributed_optimizer: bool = flag(False, "parallelism", "shard the optimizer state (fp32 masters, moments) "
                                           "over the data-parallel group (ZeRO-1)")
    ns_backend: str = flag("auto", "optimizer", "Muon-NSGD: Newton-Schulz implementation (auto: the fastest "
                           "available, timed once; torch on CPU)")
    # muP (megatron_grow/mup.py)
    mup: bool = flag(False, "optimizer", "muP: init, logits and AdamW's hidden-matrix LR scaled by the width "
                     "multiplier --hidden-size / --mup-base-hidden-size")
    mup_base_hidden_size: int | None = flag(None, "optimizer", "muP: the width the hyperparameters were tuned at",
                                            "none; --mup needs it")
    mup_base_num_layers: int | None = flag(None, "optimizer", "depth-muP (with --mup): every residual branch's "
                                           "output is multiplied by sqrt(this / --num-layers)", "off")
    # progressive growth (megatron_grow/growth)
    grow_at_iter: int | None = flag(None, "growth", "tau: grow after this iteration", "no growth")
    grow_at_fraction: float | None = flag(None, "growth", "tau as a fraction of --train-iters", "no growth")
    grow_at: str | None = flag(None, "growth", "auto: tau from the metrics of a pilot pair (--grow-pilot-metrics; "
                               "wsd only; megatron_grow/growth/tau.py)", "off")
    grow_pilot_metrics: str | None = flag(None, "growth", "--grow-at auto: FIXED.jsonl,GROWN.jsonl, the metrics of a "
                                          "fixed-size pilot and of one grown right after warmup", "none")
    grow_mix_tolerance: float = flag(0.01, "growth", "--grow-at auto: the grown pilot has mixed once its loss stays "
                                     "within this relative gap of the fixed one")
    grow_to_layers: int | None = flag(None, "growth", "target depth", "no growth")
    grow_placement: str = flag("bottom", "growth", "where the trained layers go: bottom (the new layers under them), "
                               "top (above), stack (the source blocks repeated in order), interleave (each in place)")
    grow_init: str = flag("random", "growth", "new layers: random (the model's init), copy (of a source block), zero / "
                          "copy_zeroL (random / copy, residual output projections zeroed: the function is kept)")
    grow_optimizer_state: str = flag("inherit", "growth", "optimizer state after growth: inherit (trained layers keep "
                                     "theirs, new ones start empty), copy (copied layers take their source's), "
                                     "reset (all start empty)")
    grow_new_layer_lr_mult: float = flag(1.0, "growth", "the new layers' LR multiplier right after growth, going "
                                         "linearly back to 1 over --grow-new-layer-lr-iters")
    grow_new_layer_lr_iters: int = flag(0, "growth", "iterations for --grow-new-layer-lr-mult to return to 1 (0: it "
                                        "holds to the end)")
    grow_tensor_model_parallel_size: int | None = flag(None, "growth", "TP size after growth", "unchanged")
    grow_pipeline_model_parallel_size: int | None = flag(None, "growth", "PP size after growth", "unchanged")
    grow_expert_model_parallel_size: int | None = flag(None, "growth", "deepseek-v3: EP size after growth",
                                                       "unchanged")
    grow_pipeline_layers: str | None = flag(None, "growth", "explicit per-stage layer counts after growth, e.g. 3,1",
                                            "an even split")
    # with --grow-schedule, placement, init and optimizer state come from the flags above, for every step
    grow_schedule: str | None = flag(None, "growth", "several growths: LAYERS@ITER[:tpN][:ppN][:epN], comma-separated "
                                     "(4@1050,8@1275:tp2: to 4 layers after iteration 1050, to 8 on TP2 after 1275)",
                                     "off")
    # data
    data_path: str | None = flag(None, "data", ".bin/.idx prefix from tools/preprocess_data.py, or demo (the "
                                 "bundled corpus)", "none; give it or --mock-data")
    tokenizer_model: str | None = flag(None, "data", "SentencePiece model the data was preprocessed with",
                                       "none; --data-path demo brings its own")
    mock_data: bool = flag(False, "data", "synthetic tokens (megatron-core's MockGPTDataset), no files")
    split: str = flag("98,2,0", "data", "train,validation,test weights of the documents (the test part is unused)")
    data_cache_path: str | None = flag(None, "data", "directory of the dataset index cache", "DATA_PATH/cache")
    # eval
    eval_interval: int = flag(50, "metrics", "held-out loss every N iterations and at the last")
    eval_iters: int = flag(4, "metrics", "global batches per held-out evaluation (the same ones every time)")
    # checkpointing
    save: str | None = flag(None, "checkpoints", "directory to save checkpoints in", "no checkpoints")
    save_interval: int | None = flag(None, "checkpoints", "save every N iterations", "only at the end or a stop")
    exit_interval: int | None = flag(None, "checkpoints", "stop (saving, with --save) after an iteration that is a "
                                     "multiple of N", "off")
    load: str | None = flag(None, "checkpoints", "checkpoint directory to resume", "start afresh")
    ckpt_step: int | None = flag(None, "checkpoints", "load this iteration of --load", "the latest")
    ckpt_fallback: bool = flag(False, "checkpoints", "if the latest checkpoint of --load is damaged (checksums, "
                               "unreadable), load the newest intact one")
    keep_last_k: int | None = flag(None, "checkpoints", "keep only the newest K checkpoints in --save (and no stale "
                                   ".tmp)", "keep all")
    # SIGTERM, SIGINT and SIGUSR1 save and stop the same way at the end of the current iteration
    exit_duration_in_mins: float | None = flag(None, "checkpoints", "save and stop (exit status 4) after this many "
                                               "minutes of wall-clock time", "no limit")
    distributed_timeout_minutes: float = flag(10, "checkpoints", "minutes a collective may wait before it fails (a "
                                              "frozen or lost rank; exit status 5)")
    override_opt_param_scheduler: bool = flag(False, "checkpoints", "resuming with LR-schedule flags that differ "
                                              "from the checkpoint's: apply the flags' schedule (else refused)")
    # logging
    log_interval: int = flag(1, "metrics", "log metrics every N iterations and at the last")
    metrics_file: str | None = flag(None, "metrics", "append one JSON line per logged iteration, evaluation and "
                                    "growth to this file", "none")
    tensorboard_dir: str | None = flag(None, "metrics", "write the logged scalars for TensorBoard here", "none")
    progress: bool = flag(True, "metrics", "a progress bar on stderr")
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
# the model families (megatron_grow/models) and the growth vocabulary (growth/plan.py) are named here
# as the flags take them; tests/test_help.py checks that they agree with their owners
CHOICES = {
    "model": ["deepseek-v3", "gpt2", "llama3"],
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
    "grow_placement": ["bottom", "top", "stack", "interleave"],
    "grow_init": ["random", "copy", "zero", "copy_zeroL"],
    "grow_optimizer_state": ["inherit", "copy", "reset"],
    "grow_at": ["auto"],
    "moe_router_score_function": ["softmax", "sigmoid"],
    "moe_router_load_balancing_type": ["aux_loss", "seq_aux_loss", "none"],
    "moe_token_dispatcher_type": ["alltoall", "allgather"],
}


def flag_fields() -> list[dataclasses.Field]:
    """The RunConfig fields that are command-line flags (what a checkpoint's config restores)."""
    return [f for f in dataclasses.fields(RunConfig) if f.metadata.get("flag", True)]


def saved_config(saved: dict) -> RunConfig:
    """The flags a checkpoint was saved with (its common state's "config"), as a RunConfig; fields
    a newer version added keep their defaults."""
    flags = {f.name for f in flag_fields()}
    return RunConfig(**{k: v for k, v in saved.items() if k in flags})


def shown_default(f: dataclasses.Field) -> str:
    """A flag's default as --help and flag_table() print it."""
    if f.metadata["shown"] is not None:
        return f.metadata["shown"]
    return ("on" if f.default else "off") if isinstance(f.default, bool) else str(f.default)


def flag_name(f: dataclasses.Field) -> str:
    return "--" + f.name.replace("_", "-")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m megatron_grow.train", usage="%(prog)s [-h] [--model FAMILY] [--preset NAME] [--FLAG VALUE ...]",
        description="Train a GPT2 / LLaMA3 / DeepSeekV3-MoE model on megatron-core (torchrun --nproc_per_node N for "
        "N processes). Flags follow Megatron-LM's names; every preset field can be overridden by its flag.",
    )
    groups = {name: p.add_argument_group(title) for name, title in GROUPS.items()}
    for f in flag_fields():
        if f.type in ("bool", "bool | None"):
            kind = {"action": argparse.BooleanOptionalAction}
        else:
            typ = {"int": int, "int | None": int, "float": float, "float | None": float}.get(f.type, str)
            kind = {"type": typ, "choices": CHOICES.get(f.name), "metavar": {int: "N", float: "X"}.get(typ)}
        action = groups[f.metadata["group"]].add_argument(flag_name(f), default=f.default, **kind)
        # (set afterwards: python 3.10's BooleanOptionalAction appends "(default: True)" to a help it is given)
        action.help = f"{f.metadata['help']} (default: {shown_default(f)})".replace("%", "%%")
    return p


def flag_table(group: str | None = None) -> str:
    """The flags of ``group`` (default: every group, in --help's order) as a markdown table: flag | default |
    help, from the same field metadata as --help."""
    if group is not None and group not in GROUPS:
        raise ValueError(f"no flag group {group!r}; choose one of {', '.join(GROUPS)}")
    rows = ["| flag | default | help |", "|---|---|---|"]
    for g in GROUPS if group is None else [group]:
        for f in (f for f in flag_fields() if f.metadata["group"] == g):
            name = flag_name(f)
            if f.type in ("bool", "bool | None"):
                name = "--[no-]" + name[2:]
            elif f.name in CHOICES:
                name += " " + "|".join(CHOICES[f.name])
            rows.append("| " + " | ".join(s.replace("|", "\\|") for s in (
                f"`{name}`", shown_default(f), f.metadata["help"])) + " |")
    return "\n".join(rows) + "\n"


class ConfigError(ValueError):
    """Raised with every problem found, one per line, each naming the flag to change. (The entry
    points print it once and exit 1.)"""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid configuration:\n  - " + "\n  - ".join(problems))


def parse_args(argv=None) -> RunConfig:
    ns = parser().parse_args(argv)
    return RunConfig(**vars(ns))


# --- checks that read fields alone (the components check their own flags; megatron_grow/finalize.py) ---
def first_tier_problems(cfg: RunConfig) -> list[str]:
    """Sizes every other check divides by."""
    names = ("tensor_model_parallel_size", "pipeline_model_parallel_size", "micro_batch_size", "train_iters",
             "hidden_size", "num_attention_heads", "seq_length", "eval_iters", "log_interval", "eval_interval")
    return [f"--{n.replace('_', '-')} must be >= 1 (got {getattr(cfg, n)})" for n in names
            if getattr(cfg, n) is not None and getattr(cfg, n) < 1]


def batch_problems(cfg: RunConfig) -> list[str]:
    tp, pp, ws = cfg.tensor_model_parallel_size, cfg.pipeline_model_parallel_size, cfg.world_size
    dp = cfg.data_parallel_size
    if ws % (tp * pp) == 0 and cfg.global_batch_size % (cfg.micro_batch_size * dp):
        return [f"--global-batch-size {cfg.global_batch_size} is not divisible by --micro-batch-size "
                f"{cfg.micro_batch_size} x data-parallel size {dp}; use a multiple of {cfg.micro_batch_size * dp}"]
    return []


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


def range_problems(cfg: RunConfig) -> list[str]:
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


# --- growth: the values its fields give ---
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
