"""SentencePiece tokenizer, in the shape megatron-core's GPTDataset expects, and its trainer.

megatron-core's datasets duck-type the tokenizer (``GPTDatasetConfig.tokenizer``): they read
``vocab_size`` (token dtype), ``eod`` (loss / position masks), ``pad`` (padding id, masked out of the
loss) and ``unique_identifiers`` (part of the hash that keys the on-disk index cache). ``Tokenizer``
provides exactly these, so it is not a subclass of megatron's abstract tokenizer classes.
"""

from __future__ import annotations

import hashlib
import os

import sentencepiece as spm

TRAIN_SEED = 1234
TRAIN_THREADS = 2  # fixed, not os.cpu_count(): the trained model depends on the thread count


class Tokenizer:
    """A SentencePiece ``.model``.

    ``eod`` (end of document, appended after every document by the preprocessor) is the model's EOS
    id; a model without EOS uses its PAD id instead, and one with neither is refused. ``pad`` is -1,
    an id no real token has, so megatron never masks a real token as padding.
    """

    pad = -1

    def __init__(self, path: str):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"tokenizer model {path} not found")
        self.path = path
        self.sp = spm.SentencePieceProcessor(model_file=path)
        self.vocab_size = int(self.sp.get_piece_size())
        if self.sp.eos_id() >= 0:
            self.eod = int(self.sp.eos_id())
        elif self.sp.pad_id() >= 0:
            self.eod = int(self.sp.pad_id())
        else:
            raise ValueError(f"tokenizer model {path} has neither an EOS nor a PAD id to use as end of document")
        # keys megatron's dataset index cache: the vocabulary, not the file (whose trainer spec
        # records the temporary paths it was trained from) nor where it lies
        pieces = [(self.sp.id_to_piece(i), self.sp.get_score(i)) for i in range(self.vocab_size)]
        digest = hashlib.md5(repr((pieces, self.eod)).encode(), usedforsecurity=False).hexdigest()
        self.unique_identifiers = {"class": "SentencePiece", "md5": digest, "vocab_size": self.vocab_size}

    @property
    def eos(self) -> int:
        return self.eod

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` (no EOD added)."""
        return self.sp.encode(text)

    def detokenize(self, ids) -> str:
        """Text of ``ids``; EOD ids are dropped."""
        return self.sp.decode([int(i) for i in ids if int(i) != self.eod])

    def __repr__(self) -> str:
        return f"Tokenizer({self.path!r}, vocab_size={self.vocab_size}, eod={self.eod})"


def train_tokenizer(input_files: list[str], model_prefix: str, vocab_size: int) -> str:
    """Train a SentencePiece BPE model on plain-text files; returns the ``.model`` path.

    Byte fallback and the identity normalisation make any text round-trip exactly (newline and tab
    are pieces of their own). Deterministic for a given input and sentencepiece version: fixed seed
    and thread count; at most 200k input lines are sampled, which keeps it to a few seconds.
    Raises ValueError when ``vocab_size`` does not fit the input."""
    spm.set_random_generator_seed(TRAIN_SEED)
    try:
        spm.SentencePieceTrainer.train(
            input=",".join(input_files), model_prefix=model_prefix, vocab_size=vocab_size, model_type="bpe",
            byte_fallback=True, character_coverage=1.0, split_digits=True, remove_extra_whitespaces=False,
            normalization_rule_name="identity", allow_whitespace_only_pieces=True,
            input_sentence_size=200_000, shuffle_input_sentence=True, max_sentence_length=16384,
            num_threads=TRAIN_THREADS, minloglevel=2, user_defined_symbols=["\n", "\t"],
        )
    except RuntimeError as e:  # e.g. "Vocabulary size too high (9000). Please set it to a value <= 1234."
        raise ValueError(f"training a {vocab_size}-token SentencePiece model failed: {e}") from e
    return model_prefix + ".model"
