"""Import a HuggingFace model directory as a checkpoint: continue training a published model, or grow it.

    python tools/import_hf.py --hf DIR --save CKPT [--optimizer adam|muon-nsgd] [--no-tokenizer]
    torchrun ... -m megatron_grow.train <the printed model flags> --load CKPT --save RUN --data-path ...
    python tools/expand_checkpoint.py --load CKPT --save DEEPER --target-num-layers 24 \
        --placement interleave --init copy_zeroL         # depth up-scaling, as LLaMA-Pro does

LlamaForCausalLM -> llama3 (any RoPE base and norm epsilon: Llama-2, TinyLlama, Llama-3; Llama-3.1 /
3.2's RoPE scaling, rope_type llama3), GPT2LMHeadModel -> gpt2, DeepseekV3ForCausalLM (plain RoPE) ->
deepseek-v3, from config.json and *.safetensors in DIR. The result is an iteration-0 checkpoint with
fresh optimizer state for --optimizer, loadable at any TP/PP layout; training from it takes the flags'
LR schedule. The RoPE base, norm epsilon and RoPE scaling become flags (--rotary-base, --norm-epsilon,
--use-rope-scaling --rope-scaling-factor; printed with the others); every constant our family fixes
(activation, biases, what megatron-core's RoPE cannot apply) must be the HF model's, else it is refused
naming the field. The model's tokenizer in DIR (tokenizer.json, GPT-2's vocab.json + merges.txt, or
tokenizer.model) is copied into CKPT/tokenizer: --load CKPT trains with it when no tokenizer flag is
given (preprocess the data with the same files), and tools/export_hf.py writes it back. One process, no
GPU needed.
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
    p.add_argument("--no-tokenizer", action="store_true", help="leave the model's tokenizer behind")
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
    tokenizer = None if args.no_tokenizer else carried_tokenizer(args.hf, hf_config.vocab_size, problems)
    if problems:
        sys.exit(f"error: cannot import {args.hf}:\n  - " + "\n  - ".join(problems))
    with user_errors_exit():
        max_pos = flags[flags.index("--max-position-embeddings") + 1]  # (the sequence length is the run's choice)
        cfg = finalize(config.parse_args([*flags, "--seq-length", max_pos, "--optimizer", args.optimizer,
                                          "--mock-data", "--device", "cpu", "--save", args.save]), 1, "cpu")
    if tokenizer:  # (recorded in the checkpoint's config: tools/export_hf.py writes it back from there)
        into = os.path.join(os.path.abspath(args.save), TOKENIZER_DIR)  # (the copy, made once the model is saved)
        tokenizer = {k: v if k == "tokenizer_type" or not v else into if os.path.isdir(v)
                     else os.path.join(into, os.path.basename(v)) for k, v in tokenizer.items()}
        for k, v in tokenizer.items():
            setattr(cfg, k, v)
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
    if tokenizer:
        copy_tokenizer(args.hf, tokenizer, args.save)
    carried = (f"; its tokenizer ({tokenizer['tokenizer_type']}) is in {os.path.join(args.save, TOKENIZER_DIR)}, "
               f"which --load {args.save} trains with" if tokenizer else "; no tokenizer carried")
    print(f"imported {args.hf} as a {cfg.num_layers}-layer {cfg.model} checkpoint (iteration 0) in {args.save}"
          f"{carried}; train it with: {' '.join(flags)} --optimizer {args.optimizer} --load {args.save}")


TOKENIZER_DIR = "tokenizer"  # (under the checkpoint directory; megatron_grow/data reads it at --load)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
                   "tokenizer.model")


def carried_tokenizer(directory: str, vocab_size: int, problems: list[str]) -> dict | None:
    """The tokenizer fields of the tokenizer files in HF model ``directory`` (None: it has none); a tokenizer
    that does not load, or is larger than the model's vocabulary, is added to ``problems``."""
    from megatron_grow.data.tokenizer import build_tokenizer, tokenizer_flags_for_dir

    fields = tokenizer_flags_for_dir(directory)
    if fields is None:
        return None
    try:
        tok = build_tokenizer(type("Flags", (), dict(fields, vocab_size=None))())
    except (OSError, ValueError) as e:
        problems.append(f"its tokenizer: {e} (or import without it: --no-tokenizer)")
        return None
    if tok.vocab_size > vocab_size:
        problems.append(f"its tokenizer has {tok.vocab_size} tokens, the model's vocab_size is {vocab_size}")
    return fields


def copy_tokenizer(directory: str, fields: dict, save: str) -> None:
    """Copy the tokenizer files of ``directory`` into SAVE/tokenizer, which ``fields`` name."""
    import shutil

    from megatron_grow.data.tokenizer import tokenizer_flags_for_dir

    into = os.path.join(os.path.abspath(save), TOKENIZER_DIR)
    os.makedirs(into)
    for name in TOKENIZER_FILES:
        if os.path.isfile(os.path.join(directory, name)):
            shutil.copyfile(os.path.join(directory, name), os.path.join(into, name))
    assert tokenizer_flags_for_dir(into) == fields, (tokenizer_flags_for_dir(into), fields)


if __name__ == "__main__":
    main()
