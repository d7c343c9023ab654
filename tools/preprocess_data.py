"""Turn raw text into megatron indexed .bin/.idx for training.

    python tools/preprocess_data.py --input a.txt b.txt docs.jsonl --json-keys text \
        --output-prefix data/corpus --train-tokenizer --vocab-size 8192
    python tools/preprocess_data.py --input docs.jsonl --output-prefix data/corpus --tokenizer-model tok.model

Text files are one document each; .jsonl files give one document per line (the --json-keys field).
With --train-tokenizer a SentencePiece BPE model is trained on the input and saved as
<output-prefix>.tokenizer.model.
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", nargs="+", required=True, help="text files and/or .jsonl files")
    p.add_argument("--json-keys", nargs="+", default=["text"])
    p.add_argument("--output-prefix", required=True)
    tok = p.add_mutually_exclusive_group()
    tok.add_argument("--tokenizer-model", help="an existing SentencePiece .model")
    tok.add_argument("--train-tokenizer", action="store_true", help="train one on the input")
    p.add_argument("--vocab-size", type=int, default=8192, help="with --train-tokenizer")
    p.add_argument("--append-eod", action=argparse.BooleanOptionalAction, default=True)
    args = p.parse_args(argv)
    problems = [f"--input {path}: file not found" for path in args.input if not os.path.isfile(path)]
    if not args.tokenizer_model and not args.train_tokenizer:
        problems.append("pass --tokenizer-model PATH (a SentencePiece .model) or --train-tokenizer --vocab-size N")
    if args.tokenizer_model and not os.path.isfile(args.tokenizer_model):
        problems.append(f"--tokenizer-model {args.tokenizer_model}: file not found")
    for ext in (".bin", ".idx"):
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
            with tempfile.TemporaryDirectory() as tmp:
                text = os.path.join(tmp, "train.txt")
                with open(text, "w", encoding="utf-8") as f:
                    for doc in read_documents(args.input, args.json_keys):
                        f.write(doc.replace("\r", "") + "\n")
                os.makedirs(os.path.dirname(os.path.abspath(args.output_prefix)), exist_ok=True)
                model = train_tokenizer([text], args.output_prefix + ".tokenizer", args.vocab_size)
        else:
            model = args.tokenizer_model
        stats = encode_to_indexed(read_documents(args.input, args.json_keys), Tokenizer(model),
                                  args.output_prefix, args.append_eod)
    except (KeyError, ValueError) as e:
        sys.exit(f"error: {e.args[0] if e.args else e}")
    print(f"{stats['documents']} documents, {stats['tokens']} tokens -> {stats['bin']}, {stats['idx']} "
          f"(tokenizer {model}, vocab {Tokenizer(model).vocab_size})")


if __name__ == "__main__":
    main()
