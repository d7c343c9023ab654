"""SentencePiece tokenizer, in the shape megatron-core's GPTDataset expects (vocab_size, eod, pad)."""

from __future__ import annotations

import os

import sentencepiece as spm


class Tokenizer:
    """Wraps a SentencePiece ``.model``. ``eod`` (end of document, appended after every document) is
    the model's EOS id; ``pad`` is -1, so no real token is ever masked as padding."""

    pad = -1

    def __init__(self, path: str):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"tokenizer model {path} not found")
        self.path = path
        self.sp = spm.SentencePieceProcessor(model_file=path)
        self.vocab_size = self.sp.get_piece_size()
        self.eod = self.sp.eos_id() if self.sp.eos_id() >= 0 else self.vocab_size - 1
        # part of the hash megatron's dataset index cache is keyed by
        self.unique_identifiers = {"class": "SentencePiece", "path": os.path.abspath(path),
                                   "vocab_size": self.vocab_size}

    def tokenize(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def detokenize(self, ids) -> str:
        return self.sp.decode([int(i) for i in ids if int(i) != self.eod])


def train_tokenizer(input_files: list[str], model_prefix: str, vocab_size: int) -> str:
    """Train a byte-fallback BPE SentencePiece model (any text round-trips); returns the .model path."""
    spm.SentencePieceTrainer.train(
        input=",".join(input_files), model_prefix=model_prefix, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, split_digits=True, remove_extra_whitespaces=False,
        normalization_rule_name="identity", allow_whitespace_only_pieces=True,
        input_sentence_size=200_000, shuffle_input_sentence=True, seed_sentencepiece_size=200_000,
        max_sentence_length=16384, num_threads=2, minloglevel=2,
        user_defined_symbols=["\n", "\t"],
    )
    return model_prefix + ".model"
