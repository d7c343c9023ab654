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
    train_iters: int | None = flag(None, "training", "training iterations",
                                   "100, or --train-samples // --global-batch-size")
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
    data_path: list[str] | None = flag(None, "data", "one .bin/.idx prefix (tools/preprocess_data.py), several, or "
                                       "weight-prefix pairs (0.3 web 0.7 code: sampling ratios; several without "
                                       "weights: in proportion to their sizes, as Megatron-LM), divided by --split; "
                                       "demo: the bundled corpus", "none; give it, --train-data-path or --mock-data")
    tokenizer_model: str | None = flag(None, "data", "the tokenizer the data was preprocessed with: a SentencePiece "
                                       ".model, an HF tokenizer.json or its directory, a tiktoken .json",
                                       "none; --data-path demo brings its own")
    mock_data: bool = flag(False, "data", "synthetic tokens (megatron-core's MockGPTDataset), no files")
    split: str | None = flag(None, "data", "--data-path: train,validation,test weights of each prefix's documents "
                             "(the test part is unused); not with --train-data-path", "98,2,0 with --data-path")
    data_cache_path: str | None = flag(None, "data", "directory of the dataset index cache (a subdirectory per "
                                       "contents of the data files)", "the first prefix's PREFIX/cache")
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
    # RoPE and norm constants, and Megatron-LM's architecture flags, checked against --model (models/__init__.py)
    rotary_base: float | None = flag(None, "model", "RoPE base (theta)",
                                     "the family's: llama3 500000, deepseek-v3 10000")
    norm_epsilon: float | None = flag(None, "model", "epsilon of the RMSNorm / LayerNorm",
                                      "the family's: llama3 and gpt2 1e-5, deepseek-v3 1e-6")
    use_rope_scaling: bool = flag(False, "model", "LLaMA-3.1 RoPE scaling (rope_type llama3: low / high frequency "
                                  "factors 1 / 4, original context 8192, as megatron-core fixes them)")
    rope_scaling_factor: float = flag(8.0, "model", "--use-rope-scaling: its factor (Llama-3.1: 8, Llama-3.2: 32)")
    rotary_percent: float = flag(1.0, "model", "fraction of each head's dimensions RoPE rotates (llama3; below 1 "
                                 "cannot be exported to HF's LLaMA)")
    swiglu: bool | None = flag(None, "model", "SwiGLU MLP: checked against --model (llama3, deepseek-v3: on; gpt2: "
                               "off)", "the family's")
    normalization: str | None = flag(None, "model", "checked against --model (gpt2: LayerNorm; llama3, deepseek-v3: "
                                     "RMSNorm)", "the family's")
    position_embedding_type: str | None = flag(None, "model", "checked against --model (gpt2: learned_absolute; "
                                               "llama3, deepseek-v3: rope)", "the family's")
    group_query_attention: bool | None = flag(None, "model", "grouped-query attention with --num-query-groups "
                                              "(llama3); --no-group-query-attention: one KV head per query head",
                                              "the family's")
    disable_bias_linear: bool | None = flag(None, "model", "no biases in the linear layers: checked against --model "
                                            "(llama3, deepseek-v3: none; gpt2: biases)", "the family's")
    apply_layernorm_1p: bool = flag(False, "model", "norm scales stored as 1 + gamma, gamma starting at 0 "
                                    "(megatron-core's layernorm_zero_centered_gamma); the same function")
    use_mcore_models: bool = flag(False, "model", "accepted for Megatron-LM's scripts: models here are always "
                                  "megatron-core's")
    # monitoring (megatron_grow/monitor.py) and Megatron-LM's loop flags (training.py)
    wandb_project: str | None = flag(None, "metrics", "log the metrics to Weights & Biases in this project (rank 0; "
                                     "needs pip install wandb; WANDB_MODE=offline writes local files only)", "off")
    wandb_exp_name: str | None = flag(None, "metrics", "the W&B run's name", "one wandb picks")
    wandb_save_dir: str | None = flag(None, "metrics", "directory of W&B's local files", "--save/wandb, else ./wandb")
    wandb_entity: str | None = flag(None, "metrics", "the W&B entity (team or user) of --wandb-project",
                                    "your default entity")
    log_throughput: bool = flag(False, "metrics", "log tflops_per_gpu: the iteration's model TFLOP/s per process "
                                "(Megatron-LM's FLOPs count over step time x world size)")
    profile: bool = flag(False, "metrics", "profile iterations --profile-step-start+1 .. --profile-step-end: with "
                         "--use-pytorch-profiler a torch.profiler trace, else an Nsight Systems capture range (CUDA)")
    profile_step_start: int = flag(10, "metrics", "--profile: start after this many iterations")
    profile_step_end: int = flag(12, "metrics", "--profile: stop after this iteration (or at the run's end)")
    profile_ranks: list[int] | None = flag(None, "metrics", "--profile: the global ranks to profile, e.g. 0 1",
                                           "all ranks")
    use_pytorch_profiler: bool = flag(False, "metrics", "--profile with torch.profiler (CPU and GPU): a Chrome trace "
                                      "per rank in --tensorboard-dir/torch_profile")
    manual_gc: bool = flag(False, "training", "Python's automatic garbage collection off while training; collected "
                           "every --manual-gc-interval iterations and around evaluations")
    manual_gc_interval: int = flag(0, "training", "--manual-gc: collect every N iterations (0: only around "
                                   "evaluations)")
    manual_gc_eval: bool = flag(True, "training", "--manual-gc: collect before each evaluation (all generations) "
                                "and after it (the youngest)")
    empty_unused_memory_level: int = flag(0, "training", "torch.cuda.empty_cache(): 1 after each forward-backward "
                                          "and evaluation batch, 2 also after each optimizer step, 0 never (CPU: "
                                          "nothing to free, no effect)")
    # tokenizers (megatron_grow/data/tokenizer.py), Megatron-LM's names
    tokenizer_type: str | None = flag(None, "data", "the tokenizer's kind (every one from local files)",
                                      "inferred: a .model SentencePiece, a directory or .json HuggingFace, "
                                      "--vocab-file/--merge-file GPT2BPE")
    vocab_file: str | None = flag(None, "data", "GPT2BPETokenizer: GPT-2's vocab.json (encoder.json)", "none")
    merge_file: str | None = flag(None, "data", "GPT2BPETokenizer: GPT-2's merges.txt (vocab.bpe)", "none")
    tiktoken_pattern: str | None = flag(None, "data", "TikTokenizer: its split pattern, v1 or v2 (no effect on "
                                        "other types)", "v2")
    # dataset blends and data loading (megatron_grow/data/datasets.py)
    train_data_path: list[str] | None = flag(None, "data", "the training data alone, in --data-path's forms (with "
                                             "--valid-data-path; --split does not apply)", "none")
    valid_data_path: list[str] | None = flag(None, "data", "the held-out data alone, in --data-path's forms", "none")
    test_data_path: list[str] | None = flag(None, "data", "the test data alone, in --data-path's forms (checked, "
                                            "unused)", "none")
    mmap_bin_files: bool = flag(True, "data", "memory-map the .bin files (--no-mmap-bin-files: read each sample "
                                "with file reads)")
    num_workers: int = flag(0, "data", "worker processes reading the samples ahead (a torch DataLoader, the same "
                            "batches in the same order); 0 reads them in the training process",
                            "0 (Megatron-LM's is 2)")
    create_attention_mask_in_dataloader: bool = flag(False, "data", "accepted for Megatron-LM's scripts: no mask is "
                                                     "ever made here (attention is causal in the kernel)")
    override_data_blend: bool = flag(False, "checkpoints", "resuming with data flags (prefixes, weights, --split, the "
                                     "files' contents) that differ from the checkpoint's: train on the new blend "
                                     "from the checkpoint's sample count on (else refused)")
    # the rest of Megatron-LM's launch-script flags: the schedule in samples, decoupled LR, loss, precision,
    # parallelism and checkpoint-format flags (megatron_grow/optim: schedule and LR groups; megatron_grow/finalize.py)
    train_samples: int | None = flag(None, "training", "train on this many samples: --train-iters becomes "
                                     "--train-samples // --global-batch-size (Megatron-LM's rule); the LR schedule "
                                     "flags then count samples too", "off (--train-iters)")
    lr_decay_iters: int | None = flag(None, "training", "iterations the LR decays over (then it stays at --min-lr; "
                                      "wsd: its decay ends here)", "--train-iters")
    lr_decay_samples: int | None = flag(None, "training", "with --train-samples: samples the LR decays over",
                                        "--train-samples")
    lr_warmup_samples: int | None = flag(None, "training", "with --train-samples: linear warmup samples",
                                         "--lr-warmup-fraction x the decay length")
    lr_wsd_decay_samples: int | None = flag(None, "training", "with --train-samples, wsd: samples of the final decay",
                                            "--lr-wsd-decay-fraction x the decay length")
    decoupled_lr: float | None = flag(None, "optimizer", "peak LR of the input embedding and output layer (their own "
                                      "param group, as Megatron-LM's; muP does not scale it)", "--lr")
    decoupled_min_lr: float | None = flag(None, "optimizer", "with --decoupled-lr: the LR its group decays to",
                                          "--min-lr")
    calculate_per_token_loss: bool = flag(False, "training", "loss and gradients averaged over the global batch's "
                                          "loss tokens (all micro-batches and DP ranks), not per micro-batch")
    cross_entropy_loss_fusion: bool = flag(False, "training", "megatron-core's fused vocab-parallel cross entropy "
                                           "(native: torch.compile'd, compiled at the first step)")
    grad_reduce_in_bf16: bool = flag(False, "parallelism", "with --bf16: accumulate and all-reduce gradients in bf16 "
                                     "(megatron DDP's grad_reduce_in_fp32 off); no effect in fp32")
    context_parallel_size: int = flag(1, "parallelism", "context-parallel size: only 1 (context parallelism is "
                                      "refused, with the reason)")
    attention_backend: str = flag("auto", "training", "attention kernels: auto, local and unfused run everywhere; "
                                  "flash and fused are Transformer Engine's (CUDA)")
    fp16: bool = flag(False, "training", "refused, with the reason (fp16 needs loss scaling; use --bf16)")
    fp8_format: str | None = flag(None, "training", "FP8 layers (Transformer Engine on a CUDA GPU only)", "off")
    fp8_amax_history_len: int = flag(1, "training", "with --fp8-format: amax history length")
    fp8_amax_compute_algo: str = flag("most_recent", "training", "with --fp8-format: amax from the history")
    fp8_param_gather: bool = flag(False, "training", "FP8 parameters gathered by megatron-core's distributed "
                                  "optimizer: refused, with the reason")
    ckpt_format: str = flag("torch_dist", "checkpoints", "checkpoint format: torch_dist only (megatron-core "
                            "dist_checkpointing, resharded across layouts at load)")
    step_batch_size_schedule: str | None = flag(None, "training", "a batch-size ramp: refused, with the reason "
                                                "(the global batch is constant here)", "off")
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

    def in_iterations(self, samples: int) -> int | float:
        """A length in samples (--train-samples' schedule flags) in iterations of --global-batch-size, exact (a
        fraction where it does not divide: the LR then changes where Megatron-LM's, counted in samples, does)."""
        q = samples / (self.global_batch_size or 1)  # (None: a layout problem is reported instead)
        return int(q) if q == int(q) else q

    @property
    def decay_iters(self) -> int | float:
        """The iterations the LR decays over (--min-lr after them)."""
        if self.lr_decay_samples is not None:
            return self.in_iterations(self.lr_decay_samples)
        return self.lr_decay_iters if self.lr_decay_iters is not None else self.train_iters

    @property
    def warmup_iters(self) -> int | float:
        if self.lr_warmup_samples is not None:
            return self.in_iterations(self.lr_warmup_samples)
        return (self.lr_warmup_iters if self.lr_warmup_iters is not None
                else int(self.lr_warmup_fraction * self.decay_iters))

    @property
    def wsd_decay_iters(self) -> int | float:
        if self.lr_wsd_decay_samples is not None:
            return self.in_iterations(self.lr_wsd_decay_samples)
        if self.lr_wsd_decay_iters is not None:
            return self.lr_wsd_decay_iters
        return int(self.lr_wsd_decay_fraction * self.decay_iters)

    @property
    def wsd_stable_end(self) -> int | float:
        """The last iteration before the WSD decay."""
        return self.decay_iters - self.wsd_decay_iters

    def lr_schedule(self) -> dict:
        """The LR schedule these flags give, by the flags that set it (what a resume compares)."""
        out = {"lr": self.lr, "min_lr": self.min_lr, "lr_decay_style": self.lr_decay_style,
               "train_iters": self.train_iters, "lr_warmup_iters": self.warmup_iters, "weight_decay": self.weight_decay}
        if self.decay_iters != self.train_iters:
            out["lr_decay_iters"] = self.decay_iters
        if self.lr_decay_style == "wsd":
            out.update(lr_wsd_decay_iters=self.wsd_decay_iters, lr_wsd_decay_style=self.lr_wsd_decay_style)
        if self.decoupled_lr is not None:
            out.update(decoupled_lr=self.decoupled_lr, decoupled_min_lr=self.decoupled_min_lr)
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
    # (Megatron-LM's choices; finalize.py says which run here)
    "attention_backend": ["auto", "local", "unfused", "flash", "fused"],
    "fp8_format": ["e4m3", "hybrid"],
    "fp8_amax_compute_algo": ["most_recent", "max"],
    "ckpt_format": ["torch", "torch_dist", "torch_dcp", "fsdp_dtensor"],
    "tokenizer_type": ["SentencePieceTokenizer", "HuggingFaceTokenizer", "GPT2BPETokenizer", "NullTokenizer",
                       "TikTokenizer"],
    "tiktoken_pattern": ["v1", "v2"],
    "normalization": ["LayerNorm", "RMSNorm"],  # (Megatron-LM's choices; models/ says which family has which)
    "position_embedding_type": ["learned_absolute", "rope", "yarn", "mrope", "relative", "none"],
}


def flag_fields() -> list[dataclasses.Field]:
    """The RunConfig fields that are command-line flags (what a checkpoint's config restores)."""
    return [f for f in dataclasses.fields(RunConfig) if f.metadata.get("flag", True)]


def saved_config(saved: dict) -> RunConfig:
    """The flags a checkpoint was saved with (its common state's "config"), as a RunConfig; fields
    a newer version added keep their defaults; a flag that became a list (--data-path) takes an older
    checkpoint's single value as a list of one."""
    flags = {f.name: f.type for f in flag_fields()}
    return RunConfig(**{k: [v] if flags[k].startswith("list[") and isinstance(v, str) else v
                        for k, v in saved.items() if k in flags})


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
            typ = {"int": int, "int | None": int, "float": float, "float | None": float,
                   "list[int] | None": int}.get(f.type, str)
            kind = {"type": typ, "choices": CHOICES.get(f.name), "metavar": {int: "N", float: "X"}.get(typ)}
            if f.type.startswith("list["):  # Megatron-LM's nargs="+" flags (--profile-ranks 0 1)
                kind["nargs"] = "+"
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
    warmup, end = cfg.warmup_iters, cfg.decay_iters
    length = (f"--train-iters {end}" if end == cfg.train_iters else
              f"the LR decay's {end} iterations (--lr-decay-iters / --lr-decay-samples)")
    if warmup >= end:
        P.append(f"warmup of {warmup} iterations (--lr-warmup-iters / --lr-warmup-fraction / --lr-warmup-samples) "
                 f"must be shorter than {length}")
    decay = cfg.wsd_decay_iters
    if cfg.lr_decay_style == "wsd" and warmup + decay > end:
        P.append(f"--lr-decay-style wsd: warmup {warmup} + decay {decay} iterations exceed {length}; shorten "
                 f"--lr-wsd-decay-iters / --lr-wsd-decay-samples / --lr-wsd-decay-fraction")
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
