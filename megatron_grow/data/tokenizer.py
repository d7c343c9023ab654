"""Tokenizers, in the shape megatron-core's GPTDataset expects, built from local files only; the trainer.

megatron-core's datasets duck-type the tokenizer (``GPTDatasetConfig.tokenizer``): they read
``vocab_size`` (token dtype), ``eod`` (loss / position masks), ``pad`` (padding id, masked out of the
loss) and ``unique_identifiers`` (part of the hash that keys the on-disk index cache). Every class here
provides exactly these plus ``tokenize`` / ``detokenize``, so none is a subclass of megatron's abstract
tokenizer classes. ``--tokenizer-type`` takes Megatron-LM's names:

- ``SentencePieceTokenizer --tokenizer-model X.model`` (``sentencepiece``, as megatron-core's)
- ``HuggingFaceTokenizer --tokenizer-model DIR|tokenizer.json`` (the ``tokenizers`` library on
  tokenizer.json; megatron-core's wraps transformers' AutoTokenizer, which is not a dependency here)
- ``GPT2BPETokenizer --vocab-file vocab.json --merge-file merges.txt`` (``tokenizers``' byte-level BPE,
  GPT-2's exact scheme, from the local files; megatron-core's asks the HF hub for "gpt2" even then)
- ``NullTokenizer --vocab-size N`` (pre-tokenized text of space-separated ids; megatron-core's)
- ``TikTokenizer --tokenizer-model X.json`` (megatron-core's, with the ``tiktoken`` package; local file)

As in Megatron-LM no BOS is added (``add_special_tokens=False``: LLaMA-3's tokenizer.json would
prepend <|begin_of_text|>); EOD is the tokenizer's end-of-text token, appended by the preprocessor.
``pad`` is -1 for every type, an id no real token has, so megatron never masks a real token as padding.
``unique_identifiers`` hash the tokenizer's content (vocabulary, merges, settings), never its path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import sentencepiece as spm

TRAIN_SEED = 1234
TRAIN_THREADS = 2  # fixed, not os.cpu_count(): the trained model depends on the thread count
TOKENIZER_TYPES = ("SentencePieceTokenizer", "HuggingFaceTokenizer", "GPT2BPETokenizer", "NullTokenizer",
                   "TikTokenizer")
# end-of-text tokens, in the order they are looked for when a tokenizer.json comes without a
# tokenizer_config.json naming its eos_token: LLaMA-3, GPT-2 / Qwen, DeepSeek-V3, Llama-2 / Mistral, Gemma
EOD_TOKENS = ("<|end_of_text|>", "<|endoftext|>", "<\uff5cend\u2581of\u2581sentence\uff5c>", "</s>", "<eos>")
GPT2_EOD = "<|endoftext|>"


def _md5(*parts) -> str:
    h = hashlib.md5(usedforsecurity=False)
    for p in parts:
        h.update(p if isinstance(p, bytes) else repr(p).encode())
    return h.hexdigest()


class Tokenizer:
    """A SentencePiece ``.model`` (``--tokenizer-type SentencePieceTokenizer``).

    ``eod`` (end of document, appended after every document by the preprocessor) is the model's EOS
    id; a model without EOS uses its PAD id instead, and one with neither is refused. ``pad`` is -1,
    an id no real token has, so megatron never masks a real token as padding.
    """

    pad = -1
    type = "SentencePieceTokenizer"

    def __init__(self, path: str, flag: str = "--tokenizer-model"):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{flag} {path}: file not found")
        self.path = path
        self.flags = f"{flag} {path}"
        try:
            self.sp = spm.SentencePieceProcessor(model_file=path)
        except (RuntimeError, OSError) as e:
            raise ValueError(f"{flag} {path}: not a SentencePiece .model ({str(e).strip()[:200]})") from None
        self.vocab_size = int(self.sp.get_piece_size())
        if self.sp.eos_id() >= 0:
            self.eod = int(self.sp.eos_id())
        elif self.sp.pad_id() >= 0:
            self.eod = int(self.sp.pad_id())
        else:
            raise ValueError(f"{flag} {path}: the SentencePiece model has neither an EOS nor a PAD id to use as "
                             f"end of document")
        # keys megatron's dataset index cache: the vocabulary, not the file (whose trainer spec
        # records the temporary paths it was trained from) nor where it lies
        pieces = [(self.sp.id_to_piece(i), self.sp.get_score(i)) for i in range(self.vocab_size)]
        self.unique_identifiers = {"class": "SentencePiece", "md5": _md5((pieces, self.eod)),
                                   "vocab_size": self.vocab_size}
        self.spec = {"tokenizer_type": self.type, "tokenizer_model": path}

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
        return f"{self.type}({self.path!r}, vocab_size={self.vocab_size}, eod={self.eod})"


SentencePieceTokenizer = Tokenizer


class HFTokenizer:
    """A ``tokenizers.Tokenizer`` (tokenizer.json, or GPT-2's vocab.json + merges.txt made into one).

    ``vocab_size`` is the highest id + 1, added tokens included (LLaMA-3: 128,256); ``eod`` the id of
    ``eod_token``. Text is encoded without the post-processor's special tokens (no BOS)."""

    pad = -1

    def __init__(self, tk, eod_token: str, type_: str, flags: str, spec: dict, digest: str):
        self.tk, self.type, self.flags, self.spec = tk, type_, flags, spec
        self.eod_token = eod_token
        eod = tk.token_to_id(eod_token)
        if eod is None:
            raise ValueError(f"{flags}: the tokenizer has no token {eod_token!r} to end documents with")
        self.eod = int(eod)
        vocab = tk.get_vocab(with_added_tokens=True)
        self.vocab_size = max(vocab.values()) + 1
        self.unique_identifiers = {"class": type_, "md5": _md5(digest, eod_token), "vocab_size": self.vocab_size}

    @property
    def eos(self) -> int:
        return self.eod

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` (no BOS, no EOD added)."""
        return self.tk.encode(text, add_special_tokens=False).ids

    def detokenize(self, ids) -> str:
        """Text of ``ids``; EOD ids are dropped."""
        return self.tk.decode([int(i) for i in ids if int(i) != self.eod], skip_special_tokens=False)

    def __repr__(self) -> str:
        return f"{self.type}({self.flags}, vocab_size={self.vocab_size}, eod={self.eod})"


class NullTokenizer:
    """Megatron-LM's NullTokenizer: documents are pre-tokenized, space-separated ids below N
    (``--vocab-size N``); EOD is N, so the vocabulary has N + 1 ids."""

    pad = -1
    type = "NullTokenizer"

    def __init__(self, n: int):
        from megatron.core.tokenizers.text.libraries.null_tokenizer import NullTokenizer as Null

        self.null = Null(n)
        self.n, self.eod, self.vocab_size = n, int(self.null.eod), int(self.null.vocab_size)
        self.flags = f"--tokenizer-type NullTokenizer --vocab-size {n}"
        self.unique_identifiers = {"class": self.type, "vocab_size": self.vocab_size}
        self.spec = {"tokenizer_type": self.type, "vocab_size": self.vocab_size}

    def tokenize(self, text: str) -> list[int]:
        """The ids written in ``text`` (whitespace-separated); ValueError for anything else or an id >= N."""
        try:
            ids = [int(x) for x in text.split()]
        except ValueError as e:
            raise ValueError(f"--tokenizer-type NullTokenizer reads space-separated token ids ({e})") from None
        bad = [i for i in ids if not 0 <= i < self.n]
        if bad:
            raise ValueError(f"--tokenizer-type NullTokenizer --vocab-size {self.n}: token id {bad[0]} is outside "
                             f"[0, {self.n})")
        return ids

    def detokenize(self, ids) -> str:
        return " ".join(str(int(i)) for i in ids if int(i) != self.eod)

    def __repr__(self) -> str:
        return f"NullTokenizer(vocab_size={self.vocab_size}, eod={self.eod})"


class TikTokenizer:
    """megatron-core's TikTokenTokenizer on a local tiktoken-format JSON vocabulary (a list of
    {"rank", "token_bytes", "token_str"}), with its 1000 special ids first; EOD is its ``</s>``."""

    pad = -1
    type = "TikTokenizer"

    def __init__(self, path: str, pattern: str | None, vocab_size: int | None):
        from megatron.core.tokenizers.text.libraries.tiktoken_tokenizer import TikTokenTokenizer

        kw = {"pattern": pattern or "v2"}
        try:
            if not vocab_size:  # the whole file, after megatron's 1000 special ids
                with open(path, encoding="utf-8") as f:
                    vocab_size = len(json.load(f)) + 1000
            kw["vocab_size"] = vocab_size
            self.tt = TikTokenTokenizer(path, **kw)
        except (AssertionError, ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise ValueError(f"--tokenizer-model {path}: not a tiktoken vocabulary megatron-core reads "
                             f"({type(e).__name__}: {str(e)[:200]})") from None
        self.path, self.flags = path, f"--tokenizer-model {path}"
        self.eod, self.vocab_size = int(self.tt.eod), int(self.tt.vocab_size)
        with open(path, "rb") as f:
            digest = _md5(f.read(), kw)
        self.unique_identifiers = {"class": self.type, "md5": digest, "vocab_size": self.vocab_size}
        self.spec = {"tokenizer_type": self.type, "tokenizer_model": path, "tiktoken_pattern": pattern,
                     "vocab_size": vocab_size}

    def tokenize(self, text: str) -> list[int]:
        return self.tt.text_to_ids(text)

    def detokenize(self, ids) -> str:
        # (tiktoken's own decode: megatron-core's ids_to_text decodes each token apart, breaking multi-byte text)
        return self.tt.tokenizer.decode([int(i) for i in ids if int(i) != self.eod])


# --- building from flags ---
def _get(cfg, name):
    return getattr(cfg, name, None)


def infer_tokenizer_type(cfg) -> str | None:
    """The type --tokenizer-type would be, when it is not given: --vocab-file / --merge-file: GPT2BPETokenizer;
    a --tokenizer-model directory or .json: HuggingFaceTokenizer; any other --tokenizer-model:
    SentencePieceTokenizer; None without any tokenizer flag."""
    if _get(cfg, "tokenizer_type"):
        return cfg.tokenizer_type
    if _get(cfg, "vocab_file") or _get(cfg, "merge_file"):
        return "GPT2BPETokenizer"
    model = _get(cfg, "tokenizer_model")
    if not model:
        return None
    if os.path.isdir(model) or model.endswith(".json"):
        return "HuggingFaceTokenizer"
    return "SentencePieceTokenizer"


def tokenizer_flag_problems(cfg) -> list[str]:
    """What is missing or wrong in the tokenizer flags, without reading the files' contents: each
    message names the flag and the file (the flags' combination, missing files, hub names)."""
    kind = infer_tokenizer_type(cfg)
    model, vocab, merges = _get(cfg, "tokenizer_model"), _get(cfg, "vocab_file"), _get(cfg, "merge_file")
    P = []
    if kind is None:
        return P
    if kind not in TOKENIZER_TYPES:
        return [f"--tokenizer-type {kind}: not supported here; choose one of {', '.join(TOKENIZER_TYPES)}"]
    uses = {"SentencePieceTokenizer": {"tokenizer_model"}, "HuggingFaceTokenizer": {"tokenizer_model"},
            "TikTokenizer": {"tokenizer_model"}, "GPT2BPETokenizer": {"vocab_file", "merge_file"},
            "NullTokenizer": set()}[kind]
    for name in ("tokenizer_model", "vocab_file", "merge_file"):
        if name in uses and not _get(cfg, name):
            P.append(f"--tokenizer-type {kind} needs --{name.replace('_', '-')}")
        if name not in uses and _get(cfg, name):
            P.append(f"--{name.replace('_', '-')} {_get(cfg, name)}: --tokenizer-type {kind} does not use it")
    if kind == "NullTokenizer" and not _get(cfg, "vocab_size"):
        P.append("--tokenizer-type NullTokenizer needs --vocab-size N (the token ids are 0..N-1; EOD is N)")
    for name, path in (("tokenizer_model", model), ("vocab_file", vocab), ("merge_file", merges)):
        if name in uses and path and not os.path.exists(path):
            hub = "/" in path and not path.startswith(("/", ".")) and path.count("/") == 1
            P.append(f"--{name.replace('_', '-')} {path}: " + (
                "not a local file or directory; hub names are not downloaded here: download the tokenizer files "
                "and pass their path" if hub else "file not found"))
    return P


def build_tokenizer(cfg):
    """The tokenizer the flags name, from local files only.

    ``cfg``: anything with ``tokenizer_type`` (None: inferred, see ``infer_tokenizer_type``),
    ``tokenizer_model``, ``vocab_file``, ``merge_file``, ``vocab_size`` (and optionally
    ``tiktoken_pattern``), e.g. a RunConfig. For NullTokenizer ``vocab_size`` is the tokenizer's size,
    N + 1 for Megatron-LM's ``--vocab-size N`` (resolve_data_flags turns the flag into that).
    Returns an object with ``type``, ``vocab_size``, ``eod``, ``pad``, ``unique_identifiers``,
    ``tokenize``, ``detokenize``, ``flags`` (the flags that name it, for messages) and ``spec`` (the
    fields that build it again). Raises ValueError (FileNotFoundError for a missing file) with one
    message naming the flag and the file."""
    kind = infer_tokenizer_type(cfg)
    if kind is None:
        raise ValueError("no tokenizer: pass --tokenizer-model, --vocab-file/--merge-file or --tokenizer-type")
    problems = tokenizer_flag_problems(cfg)
    if problems:
        err = FileNotFoundError if all("not found" in p for p in problems) else ValueError
        raise err("; ".join(problems))
    names = (kind, _get(cfg, "tokenizer_model"), _get(cfg, "vocab_file"), _get(cfg, "merge_file"))
    files = [os.path.join(f, "tokenizer.json") if f and os.path.isdir(f) else f for f in names[1:]]
    stamps = tuple((os.stat(f).st_mtime_ns, os.stat(f).st_size) if f and os.path.isfile(f) else None for f in files)
    key = (*names, stamps, _get(cfg, "vocab_size") if kind == "NullTokenizer" else None, _get(cfg, "tiktoken_pattern"))
    if key not in _BUILT:  # (validation, the vocabulary size and the data each ask for it: built once)
        _BUILT.clear()
        _BUILT[key] = _build(kind, cfg)
    return _BUILT[key]


_BUILT = {}


def _build(kind: str, cfg):
    if kind == "SentencePieceTokenizer":
        return Tokenizer(cfg.tokenizer_model)
    if kind == "HuggingFaceTokenizer":
        return _huggingface(cfg.tokenizer_model)
    if kind == "GPT2BPETokenizer":
        return _gpt2(cfg.vocab_file, cfg.merge_file)
    if kind == "NullTokenizer":
        return NullTokenizer(int(cfg.vocab_size) - 1)
    try:
        import tiktoken  # noqa: F401
    except ImportError:
        raise ValueError("--tokenizer-type TikTokenizer needs the tiktoken package (megatron-core's "
                         "TikTokenTokenizer builds on it): pip install tiktoken") from None
    return TikTokenizer(cfg.tokenizer_model, _get(cfg, "tiktoken_pattern"), None)


def _hf_files(path: str) -> tuple[str, str | None]:
    """(tokenizer.json, tokenizer_config.json or None) of a --tokenizer-model directory or file."""
    if os.path.isdir(path):
        tj = os.path.join(path, "tokenizer.json")
        if not os.path.isfile(tj):
            have = sorted(os.listdir(path))[:12]
            raise FileNotFoundError(f"--tokenizer-model {path}: the directory has no tokenizer.json (it holds "
                                    f"{', '.join(have) or 'nothing'}); for vocab.json + merges.txt use "
                                    f"--vocab-file/--merge-file, for a tokenizer.model pass that file")
        directory = path
    else:
        tj, directory = path, os.path.dirname(os.path.abspath(path))
    cfg = os.path.join(directory, "tokenizer_config.json")
    return tj, cfg if os.path.isfile(cfg) else None


def _token_str(v) -> str | None:
    return v.get("content") if isinstance(v, dict) else v


def _huggingface(path: str) -> HFTokenizer:
    from tokenizers import Tokenizer as TK

    tj, config = _hf_files(path)
    try:
        with open(tj, "rb") as f:
            raw = f.read()
        tk = TK.from_str(raw.decode("utf-8"))
    except Exception as e:  # tokenizers raises plain Exceptions on malformed files
        raise ValueError(f"--tokenizer-model {tj}: not a HuggingFace tokenizer.json ({str(e).strip()[:200]})") from None
    eod = None
    if config:
        try:
            with open(config, encoding="utf-8") as f:
                eod = _token_str(json.load(f).get("eos_token"))
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
            raise ValueError(f"--tokenizer-model {path}: {config} is not a JSON object ({e})") from None
    if eod is None:
        eod = next((t for t in EOD_TOKENS if tk.token_to_id(t) is not None), None)
    if eod is None:
        raise ValueError(f"--tokenizer-model {path}: no end-of-text token found (no tokenizer_config.json "
                         f"eos_token, none of {', '.join(EOD_TOKENS)}); add a tokenizer_config.json naming its "
                         f"eos_token")
    return HFTokenizer(tk, eod, "HuggingFaceTokenizer", f"--tokenizer-model {path}",
                       {"tokenizer_type": "HuggingFaceTokenizer", "tokenizer_model": path}, _md5(tk.to_str()))


def _gpt2(vocab_file: str, merge_file: str) -> HFTokenizer:
    from tokenizers import AddedToken, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as TK

    flags = f"--vocab-file {vocab_file} --merge-file {merge_file}"
    try:
        with open(vocab_file, encoding="utf-8") as f:
            vocab = json.load(f)
        if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
            raise ValueError("not a JSON object of token -> id")
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"--vocab-file {vocab_file}: not a GPT-2 vocab.json/encoder.json ({str(e)[:200]})") from None
    merges = []
    try:
        with open(merge_file, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.startswith("#version") or not line.strip():
                    continue
                pair = line.rstrip("\n").split(" ")
                if len(pair) != 2:
                    raise ValueError(f"line {n} is not two tokens separated by a space")
                merges.append(tuple(pair))
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"--merge-file {merge_file}: not a GPT-2 merges.txt/vocab.bpe ({str(e)[:200]})") from None
    missing = next((m for m in merges if m[0] + m[1] not in vocab), None)
    if missing or not merges:
        raise ValueError(f"{flags}: the merges do not belong to the vocabulary "
                         f"({'no merges' if not merges else f'{missing[0] + missing[1]!r} is not in --vocab-file'})")
    if GPT2_EOD not in vocab:
        raise ValueError(f"--vocab-file {vocab_file}: no {GPT2_EOD} token (GPT-2's end of text)")
    tk = TK(models.BPE(vocab=vocab, merges=merges))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([AddedToken(GPT2_EOD, special=True)])  # a special token, as transformers' GPT2Tokenizer
    return HFTokenizer(tk, GPT2_EOD, "GPT2BPETokenizer", flags,
                       {"tokenizer_type": "GPT2BPETokenizer", "vocab_file": vocab_file, "merge_file": merge_file},
                       _md5(sorted(vocab.items()), merges))


# --- HF model directories (tools/export_hf.py, tools/import_hf.py) ---
def save_tokenizer(cfg, directory: str) -> list[str]:
    """Write the run's tokenizer into an HF model directory so that transformers'
    ``AutoTokenizer.from_pretrained(directory)`` loads the same tokenizer (the same ids); returns the
    files written. HuggingFaceTokenizer: its tokenizer.json (and tokenizer_config.json, or one naming
    its EOD as eos_token); GPT2BPETokenizer: vocab.json + merges.txt + tokenizer_config.json;
    SentencePieceTokenizer: a tokenizer.json made from the .model (byte-fallback BPE models with the
    identity normaliser, as tools/preprocess_data.py --train-tokenizer trains; others: ValueError
    saying why) + tokenizer_config.json, and the .model as tokenizer.model; NullTokenizer: nothing.
    Nothing is overwritten: FileExistsError if a file to write exists."""
    tok = build_tokenizer(cfg)
    if tok.type == "NullTokenizer":
        return []
    if tok.type == "TikTokenizer":
        raise ValueError("--tokenizer-type TikTokenizer has no HF tokenizer format to save to")
    writes = {}  # name -> bytes, or a path to copy
    if tok.type == "HuggingFaceTokenizer":
        tj, config = _hf_files(cfg.tokenizer_model)
        writes["tokenizer.json"] = tj
        conf = {}
        if config:
            with open(config, encoding="utf-8") as f:
                conf = json.load(f)
        conf.setdefault("tokenizer_class", "PreTrainedTokenizerFast")
        conf.setdefault("eos_token", tok.eod_token)
        writes["tokenizer_config.json"] = json.dumps(conf, indent=1, ensure_ascii=False).encode()
    elif tok.type == "GPT2BPETokenizer":
        writes["vocab.json"], writes["merges.txt"] = cfg.vocab_file, cfg.merge_file
        conf = {"tokenizer_class": "GPT2Tokenizer", "bos_token": GPT2_EOD, "eos_token": GPT2_EOD,
                "unk_token": GPT2_EOD, "add_prefix_space": False, "model_max_length": 1024}
        writes["tokenizer_config.json"] = json.dumps(conf, indent=1).encode()
    else:
        tk, special = _sentencepiece_as_hf(tok)
        writes["tokenizer.json"] = tk.to_str().encode()
        conf = {"tokenizer_class": "PreTrainedTokenizerFast", **special}
        writes["tokenizer_config.json"] = json.dumps(conf, indent=1).encode()
        writes["tokenizer.model"] = tok.path
    taken = [n for n in writes if os.path.exists(os.path.join(directory, n))]
    if taken:
        raise FileExistsError(f"{directory}: {', '.join(taken)} exist; nothing is overwritten")
    os.makedirs(directory, exist_ok=True)
    out = []
    for name, what in writes.items():
        dst = os.path.join(directory, name)
        if isinstance(what, bytes):
            with open(dst, "xb") as f:
                f.write(what)
        else:
            shutil.copyfile(what, dst)
        out.append(dst)
    return out


def _sentencepiece_as_hf(tok: Tokenizer):
    """(tokenizers.Tokenizer giving the same ids, special tokens by name) of a byte-fallback BPE
    SentencePiece model with the identity normaliser; ValueError naming what differs otherwise."""
    from sentencepiece import sentencepiece_model_pb2
    from tokenizers import Tokenizer as TK
    from tokenizers import decoders, models, normalizers

    proto = sentencepiece_model_pb2.ModelProto()
    with open(tok.path, "rb") as f:
        proto.ParseFromString(f.read())
    norm, trainer = proto.normalizer_spec, proto.trainer_spec
    unlike = [what for what, bad in [
        ("not a BPE model", trainer.model_type != trainer.BPE), ("no byte fallback", not trainer.byte_fallback),
        (f"normalizer {norm.name!r}, not 'identity'", norm.name != "identity"),
        ("extra whitespace removed", norm.remove_extra_whitespaces),
        ("pieces across whitespace", not trainer.split_by_whitespace)] if bad]
    if unlike:
        raise ValueError(f"--tokenizer-model {tok.path}: no HF conversion for this kind of SentencePiece model "
                         f"({', '.join(unlike)})")
    from transformers.convert_slow_tokenizer import SentencePieceExtractor

    sp = tok.sp
    pieces = SentencePieceExtractor(tok.path).extract(models.BPE)
    unk = sp.id_to_piece(sp.unk_id())
    tk = TK(models.BPE(vocab=pieces["vocab"], merges=pieces["merges"], unk_token=unk, byte_fallback=True,
                       fuse_unk=True))
    steps = [normalizers.Replace(" ", "\u2581")]
    if norm.add_dummy_prefix:
        steps.insert(0, normalizers.Prepend("\u2581"))
    tk.normalizer = normalizers.Sequence(steps)
    dec = [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
    tk.decoder = decoders.Sequence(dec + ([decoders.Strip(" ", 1, 0)] if norm.add_dummy_prefix else []))
    special = {name: sp.id_to_piece(i) for name, i in
               [("bos_token", sp.bos_id()), ("eos_token", sp.eos_id()), ("unk_token", sp.unk_id()),
                ("pad_token", sp.pad_id())] if i >= 0}
    from tokenizers import AddedToken

    tk.add_special_tokens([AddedToken(t, special=True) for t in special.values()])
    differ = [text for text in PROBE if tk.encode(text, add_special_tokens=False).ids != tok.tokenize(text)]
    if differ:
        raise ValueError(f"--tokenizer-model {tok.path}: its conversion to an HF tokenizer.json does not give "
                         f"SentencePiece's ids (e.g. on {differ[0]!r}; SentencePiece's whitespace splitting differs "
                         f"by model, and transformers' own LlamaTokenizer conversion differs too)")
    return tk, special


# texts the SentencePiece -> tokenizer.json conversion must encode as SentencePiece does
PROBE = ("def f(x):\n    return x  # two  spaces\n\tend  \n", "  leading and trailing  ", "a   b    c\u00a0d\r\n",
         "Unicode café 東京 🙂 ﬁ 123456", "x\n\n  y")


def tokenizer_flags_for_dir(directory: str) -> dict | None:
    """The tokenizer fields (tokenizer_type, tokenizer_model, vocab_file, merge_file) for the tokenizer
    files an HF model directory holds, None if it has none: tokenizer.json (HuggingFaceTokenizer on
    the directory) first, then vocab.json + merges.txt (GPT2BPETokenizer), then tokenizer.model
    (SentencePieceTokenizer)."""
    def has(name):
        return os.path.isfile(os.path.join(directory, name))

    out = dict.fromkeys(("tokenizer_type", "tokenizer_model", "vocab_file", "merge_file"))
    if has("tokenizer.json"):
        return out | {"tokenizer_type": "HuggingFaceTokenizer", "tokenizer_model": directory}
    if has("vocab.json") and has("merges.txt"):
        return out | {"tokenizer_type": "GPT2BPETokenizer", "vocab_file": os.path.join(directory, "vocab.json"),
                      "merge_file": os.path.join(directory, "merges.txt")}
    if has("tokenizer.model"):
        return out | {"tokenizer_type": "SentencePieceTokenizer",
                      "tokenizer_model": os.path.join(directory, "tokenizer.model")}
    return None


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
