"""Import a HuggingFace model directory as a checkpoint: continue training a published model, or grow it.

    python tools/import_hf.py --hf DIR --save CKPT [--optimizer adam|muon-nsgd]
    torchrun ... -m megatron_grow.train <the printed model flags> --load CKPT --save RUN ...
    python tools/expand_checkpoint.py --load CKPT --save DEEPER --target-num-layers 24 \
        --placement interleave --init copy_zeroL         # depth up-scaling, as LLaMA-Pro does

LlamaForCausalLM (plain RoPE; no rope scaling) -> llama3, GPT2LMHeadModel -> gpt2,
DeepseekV3ForCausalLM (plain RoPE) -> deepseek-v3, from config.json and
*.safetensors in DIR. The result is an iteration-0 checkpoint with fresh optimizer state for
--optimizer, loadable at any TP/PP layout; training from it takes the flags' LR schedule. Every
constant our family fixes (norm eps, activation, RoPE base, biases) must be the HF model's, else it
is refused naming the field. One process, no GPU needed. The tokenizer is not converted: the data
must be preprocessed with a SentencePiece model of the same vocabulary.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hf", required=True, help="HF model directory (config.json, *.safetensors)")
    p.add_argument("--save", required=True, help="checkpoint directory to write; must not exist yet")
    p.add_argument("--optimizer", default="adam", choices=["adam", "muon-nsgd"],
                   help="the optimizer whose (empty) state the checkpoint holds: train it with the same")
    args = p.parse_args(argv)

    from megatron_grow.train import _quiet, user_errors_exit

    _quiet()
    import torch

    from megatron_grow import checkpointing, config, hf, platform, runstate
    from megatron_grow.finalize import finalize
    from megatron_grow.models import architecture

    if os.path.exists(args.save):
        sys.exit(f"error: --save {args.save} exists; choose a new directory (nothing is overwritten)")
    try:
        hf_config, weights = hf.read_hf(args.hf)
    except (OSError, ValueError, hf.ConversionError) as e:
        sys.exit(f"error: --hf {args.hf}: {e}")
    flags, problems = hf.flags_from_hf(hf_config)
    if problems:
        sys.exit(f"error: cannot import {args.hf}:\n  - " + "\n  - ".join(problems))
    with user_errors_exit():
        max_pos = flags[flags.index("--max-position-embeddings") + 1]  # (the sequence length is the run's choice)
        cfg = finalize(config.parse_args([*flags, "--seq-length", max_pos, "--optimizer", args.optimizer,
                                          "--mock-data", "--device", "cpu", "--save", args.save]), 1, "cpu")
    platform.init_distributed("cpu")
    platform.init_model_parallel(1, 1, cfg.seed)
    state = runstate.build_state(cfg, torch.device("cpu"))
    try:
        hf.load_into(state.module, hf.from_hf(weights, architecture(cfg)))
    except (KeyError, hf.ConversionError) as e:
        sys.exit(f"error: cannot import {args.hf}: {e if isinstance(e, hf.ConversionError) else f'no weight {e}'}")
    checkpointing.save(args.save, 0, state.module, state.optimizer, state.scheduler,
                       runstate.common_state(cfg, state))
    checkpointing.wait_for_checksums()
    platform.shutdown()
    print(f"imported {args.hf} as a {cfg.num_layers}-layer {cfg.model} checkpoint (iteration 0) in {args.save}; "
          f"train it with: {' '.join(flags)} --optimizer {args.optimizer} --load {args.save}")


if __name__ == "__main__":
    main()
