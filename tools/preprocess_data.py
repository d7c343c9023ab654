"""Turn raw text into megatron indexed .bin/.idx for training.

    python tools/preprocess_data.py --input a.txt b.txt docs.jsonl --json-keys text \\
        --output-prefix data/corpus --train-tokenizer --vocab-size 8192
    python tools/preprocess_data.py --input docs.jsonl --output-prefix data/corpus --tokenizer-model tok.model

Text files are one document each; .jsonl files give one document per line (the --json-keys field).
An EOD token ends every document (--no-append-eod to leave it out). With --train-tokenizer a
SentencePiece BPE model is trained on the input and saved as <output-prefix>.tokenizer.model.
Nothing existing is overwritten.
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse(argv=None):
    """Parse and check the arguments; every problem is reported at once, each naming its flag."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", nargs="+", required=True, help="text files (one document each) and/or .jsonl files")
    p.add_argument("--json-keys", nargs="+", default=["text"], help="jsonl fields holding the text (default: text)")
    p.add_argument("--output-prefix", required=True, help="writes PREFIX.bin and PREFIX.idx")
    tok = p.add_mutually_exclusive_group()
    tok.add_argument("--tokenizer-model", help="an existing SentencePiece .model")
    tok.add_argument("--train-tokenizer", action="store_true", help="train one on the input")
    p.add_argument("--vocab-size", type=int, default=8192, help="with --train-tokenizer (default 8192)")
    p.add_argument("--append-eod", action=argparse.BooleanOptionalAction, default=True,
                   help="end every document with the EOD token (default on)")
    p.add_argument("--workers", type=int, default=1, help="tokenizer processes (default 1)")
    args = p.parse_args(argv)
    problems = [f"--input {path}: file not found" for path in args.input if not os.path.isfile(path)]
    if not args.tokenizer_model and not args.train_tokenizer:
        problems.append("pass --tokenizer-model PATH (a SentencePiece .model) or --train-tokenizer --vocab-size N")
    if args.tokenizer_model and not os.path.isfile(args.tokenizer_model):
        problems.append(f"--tokenizer-model {args.tokenizer_model}: file not found")
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
    from megatron_grow.data.tokenizer import Tokenizer, train_tokenizer

    try:
        if args.train_tokenizer:
            os.makedirs(os.path.dirname(os.path.abspath(args.output_prefix)), exist_ok=True)
            with tempfile.TemporaryDirectory() as tmp:
                text = os.path.join(tmp, "train.txt")
                with open(text, "w", encoding="utf-8") as f:
                    for doc in read_documents(args.input, args.json_keys):
                        f.write(doc.replace("\r", "") + "\n")
                if not open(text, encoding="utf-8").read().strip():
                    raise ValueError("the --input files hold no text (every document is empty)")
                try:
                    model = train_tokenizer([text], args.output_prefix + ".tokenizer", args.vocab_size)
                except ValueError as e:
                    raise ValueError(f"--vocab-size {args.vocab_size}: {e}") from None
        else:
            model = args.tokenizer_model
        tokenizer = Tokenizer(model)
        stats = encode_to_indexed(read_documents(args.input, args.json_keys), tokenizer,
                                  args.output_prefix, args.append_eod, args.workers)
    except ValueError as e:
        sys.exit(f"error: {e}")
    print(f"{stats['documents']} documents, {stats['tokens']} tokens -> {stats['bin']}, {stats['idx']} "
          f"(tokenizer {model}, vocab {tokenizer.vocab_size}, eod {tokenizer.eod if args.append_eod else 'off'})")


if __name__ == "__main__":
    main()
