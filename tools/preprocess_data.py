"""Turn raw text into megatron indexed .bin/.idx for training (Megatron-LM's flag names).

    python tools/preprocess_data.py --input a.txt b.txt docs.jsonl --json-keys text \\
        --output-prefix data/corpus --train-tokenizer --vocab-size 8192
    python tools/preprocess_data.py --input docs.jsonl --output-prefix data/corpus --tokenizer-model tok.model
    python tools/preprocess_data.py --input 'shards/*.jsonl.gz' --output-prefix data/c --workers 8 \\
        --tokenizer-type HuggingFaceTokenizer --tokenizer-model llama3/          # tokenizer.json in there
    python tools/preprocess_data.py --input 'pq/*.parquet' --output-prefix data/c \\
        --vocab-file gpt2/vocab.json --merge-file gpt2/merges.txt                 # GPT2BPETokenizer

Writes PREFIX.bin and PREFIX.idx (train with --data-path PREFIX); Megatron-LM's tool writes
PREFIX_text_document.bin/.idx in the same format (train on it with --data-path PREFIX_text_document).
Inputs (globs and many files, read in the order given): text files are one document each; .jsonl,
.jsonl.gz and .parquet files give one document per line / row and --json-keys field (several keys:
one document each, in one output). An EOD token ends every document (default on here, unlike
Megatron-LM; --no-append-eod to leave it out). --workers N tokenizes in N processes; the output is
identical for any N. --tokenizer-type is inferred when not given, as the trainer does. With
--train-tokenizer a SentencePiece BPE model is trained on the input and saved as
<output-prefix>.tokenizer.model. Nothing existing is overwritten.
"""

import argparse
import os
import sys
import tempfile
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from megatron_grow.data.tokenizer import TOKENIZER_TYPES  # noqa: E402 (after the path insert)

TRAIN_VOCAB = 8192


def parse(argv=None):
    """Parse and check the arguments; every problem is reported at once, each naming its flag."""
    from megatron_grow.data.preprocess import expand_inputs
    from megatron_grow.data.tokenizer import infer_tokenizer_type, tokenizer_flag_problems

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", nargs="+", required=True,
                   help="text, .jsonl, .jsonl.gz or .parquet files, or glob patterns of them")
    p.add_argument("--json-keys", nargs="+", default=["text"],
                   help="jsonl fields / parquet columns holding the text (default: text)")
    p.add_argument("--output-prefix", required=True, help="writes PREFIX.bin and PREFIX.idx")
    p.add_argument("--tokenizer-type", choices=TOKENIZER_TYPES,
                   help="inferred when not given: a .model SentencePiece, a directory or .json HuggingFace, "
                        "--vocab-file/--merge-file GPT2BPE")
    p.add_argument("--tokenizer-model", help="a SentencePiece .model, an HF tokenizer.json or its directory, "
                                             "a tiktoken .json")
    p.add_argument("--vocab-file", help="GPT2BPETokenizer: vocab.json / encoder.json")
    p.add_argument("--merge-file", help="GPT2BPETokenizer: merges.txt / vocab.bpe")
    p.add_argument("--tiktoken-pattern", choices=["v1", "v2"], help="TikTokenizer: its split pattern (default v2)")
    p.add_argument("--train-tokenizer", action="store_true", help="train a SentencePiece model on the input")
    p.add_argument("--vocab-size", type=int, help=f"with --train-tokenizer its size (default {TRAIN_VOCAB}); "
                                                  "NullTokenizer: ids are below it, EOD is it")
    p.add_argument("--append-eod", action=argparse.BooleanOptionalAction, default=True,
                   help="end every document with the EOD token (default on)")
    p.add_argument("--workers", type=int, default=1, help="tokenizer processes (default 1)")
    args = p.parse_args(argv)
    args.files, problems = expand_inputs(args.input)
    named = infer_tokenizer_type(args)
    if args.train_tokenizer:
        if named:
            problems.append("--train-tokenizer trains a SentencePiece model: drop --tokenizer-type, "
                            "--tokenizer-model, --vocab-file and --merge-file")
        args.vocab_size = args.vocab_size or TRAIN_VOCAB
    elif not named:
        problems.append("pass --tokenizer-model PATH (a SentencePiece .model, an HF tokenizer.json or its "
                        "directory), --vocab-file/--merge-file (GPT-2), --tokenizer-type NullTokenizer "
                        "--vocab-size N, or --train-tokenizer --vocab-size N")
    else:
        problems += tokenizer_flag_problems(args)
        if named != "NullTokenizer" and args.vocab_size is not None:
            problems.append(f"--vocab-size {args.vocab_size}: the vocabulary is --tokenizer-type {named}'s "
                            f"(it only sets NullTokenizer's and --train-tokenizer's)")
    if args.tiktoken_pattern and named != "TikTokenizer":
        print(f"warning: --tiktoken-pattern {args.tiktoken_pattern} has no effect with --tokenizer-type "
              f"{named or 'SentencePieceTokenizer'}", file=sys.stderr)
    if args.workers < 1:
        problems.append(f"--workers {args.workers}: must be at least 1")
    outputs = [".bin", ".idx"] + ([".tokenizer.model"] if args.train_tokenizer else [])
    for ext in outputs:
        if os.path.exists(args.output_prefix + ext):
            problems.append(f"--output-prefix {args.output_prefix}: {args.output_prefix + ext} exists; "
                            f"choose a new prefix (nothing is overwritten)")
    if problems:
        p.error("\n  " + "\n  ".join(problems))
    return args


def main(argv=None):
    args = parse(argv)
    from megatron_grow.data.preprocess import encode_to_indexed, read_documents
    from megatron_grow.data.tokenizer import build_tokenizer, train_tokenizer

    try:
        if args.train_tokenizer:
            os.makedirs(os.path.dirname(os.path.abspath(args.output_prefix)), exist_ok=True)
            with tempfile.TemporaryDirectory() as tmp:
                text = os.path.join(tmp, "train.txt")
                with open(text, "w", encoding="utf-8") as f:
                    for doc in read_documents(args.files, args.json_keys):
                        f.write(doc.replace("\r", "") + "\n")
                if not open(text, encoding="utf-8").read().strip():
                    raise ValueError("the --input files hold no text (every document is empty)")
                try:
                    model = train_tokenizer([text], args.output_prefix + ".tokenizer", args.vocab_size)
                except ValueError as e:
                    raise ValueError(f"--vocab-size {args.vocab_size}: {e}") from None
            spec = SimpleNamespace(tokenizer_type="SentencePieceTokenizer", tokenizer_model=model)
        else:
            spec = SimpleNamespace(**vars(args))
            if spec.tokenizer_type == "NullTokenizer":
                spec.vocab_size = args.vocab_size + 1  # build_tokenizer takes NullTokenizer's size, EOD included
        tokenizer = build_tokenizer(spec)
        stats = encode_to_indexed(read_documents(args.files, args.json_keys), tokenizer,
                                  args.output_prefix, args.append_eod, args.workers)
    except ValueError as e:
        sys.exit(f"error: {e}")
    print(f"{stats['documents']} documents, {stats['tokens']} tokens -> {stats['bin']}, {stats['idx']} "
          f"({'' if '--tokenizer-type' in tokenizer.flags else tokenizer.type + ' '}{tokenizer.flags}, "
          f"vocab {tokenizer.vocab_size}, "
          f"eod {tokenizer.eod if args.append_eod else 'off'})")


if __name__ == "__main__":
    main()
