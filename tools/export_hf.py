"""Export a checkpoint as a HuggingFace transformers model directory.

    python tools/export_hf.py --load runs/x/ckpt --out runs/x/hf [--ckpt-step N] [--no-tokenizer]
        [--tokenizer-model M | --vocab-file V --merge-file M] [--tokenizer-type T]

LLaMA3 -> LlamaForCausalLM, GPT2 -> GPT2LMHeadModel, DeepSeekV3 -> DeepseekV3ForCausalLM (transformers'
own classes): model.safetensors (fp32) and config.json (with the RoPE base, norm epsilon and LLaMA-3.1 RoPE
scaling the run had; --apply-layernorm-1p's norm scales written as 1 + gamma), plus the tokenizer the run
trained with, whichever type, as transformers' AutoTokenizer loads it: an HF tokenizer.json (+
tokenizer_config.json), GPT-2's vocab.json + merges.txt, or a SentencePiece .model (converted to a
tokenizer.json giving the same ids; the .model beside it as tokenizer.model). Tokenizer flags given here
replace the run's. Reads a checkpoint of any TP/PP/EP layout in one process, without a process group;
every architecture constant comes from the checkpoint itself. Then:

    AutoModelForCausalLM.from_pretrained("runs/x/hf"); AutoTokenizer.from_pretrained("runs/x/hf")
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--load", required=True, help="checkpoint directory (a --save of the trainer)")
    p.add_argument("--out", required=True, help="HF model directory to write; must not exist yet")
    p.add_argument("--ckpt-step", type=int, help="iteration to export (default: the latest)")
    p.add_argument("--tokenizer-model", help="the tokenizer to write: a SentencePiece .model, an HF tokenizer.json or "
                   "its directory (default: the one the run trained with)")
    p.add_argument("--vocab-file", help="GPT-2's vocab.json, with --merge-file (default: the run's)")
    p.add_argument("--merge-file", help="GPT-2's merges.txt, with --vocab-file (default: the run's)")
    p.add_argument("--tokenizer-type", help="the type of the tokenizer given here (default: inferred, as the trainer "
                   "does)")
    p.add_argument("--no-tokenizer", action="store_true", help="write the model only")
    args = p.parse_args(argv)

    from megatron_grow.train import _quiet

    _quiet()
    from megatron_grow import checkpointing, hf

    def fail(msg):
        sys.exit(f"error: {msg}")

    if os.path.exists(args.out):
        fail(f"--out {args.out} exists; choose a new directory (nothing is overwritten)")
    its = checkpointing.iterations(args.load)
    if not its:
        fail(checkpointing.no_checkpoint(args.load))
    it = its[-1] if args.ckpt_step is None else args.ckpt_step
    if it not in its:
        fail(checkpointing.no_such_step(args.load, it))
    path = checkpointing.iter_dir(args.load, it)
    damage = checkpointing.verify_checksums(path)
    if damage:
        fail(f"the checkpoint of iteration {it} is damaged: {damage}; export another with --ckpt-step N")
    tokenizer = None
    if not args.no_tokenizer:
        try:
            common = checkpointing.read_common_or_raise(args.load, it, fallback=False)
        except checkpointing.CheckpointError as e:
            fail(e)
        given = {k: getattr(args, k) for k in hf.TOKENIZER_FIELDS if getattr(args, k)}
        saved = common.get("config", {})
        tokenizer = given or {k: saved[k] for k in hf.TOKENIZER_FIELDS if saved.get(k)} or None
        if tokenizer and tokenizer.get("tokenizer_type") == "NullTokenizer":
            tokenizer = None  # (pre-tokenized data: no tokenizer files to write)
        if tokenizer:
            from types import SimpleNamespace

            from megatron_grow.data.tokenizer import tokenizer_flag_problems

            missing = tokenizer_flag_problems(SimpleNamespace(**{**dict.fromkeys(hf.TOKENIZER_FIELDS), **tokenizer}))
            if missing:
                fail(f"the tokenizer {'given' if given else 'the run trained with'}: {'; '.join(missing)}: pass "
                     "--tokenizer-model PATH (or --vocab-file/--merge-file) or --no-tokenizer")
    try:
        arch = hf.export(path, args.out, tokenizer)
    except hf.ConversionError as e:
        fail(e)
    print(f"exported {path} ({arch['family']}, {arch['num_layers']} layers) to {args.out}"
          + ("" if tokenizer else " without a tokenizer (the run had none: mock data or NullTokenizer)"))


if __name__ == "__main__":
    main()
