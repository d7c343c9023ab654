"""Data for the trainer: the flags resolved to files, and the train / held-out iterators."""

from __future__ import annotations

import os
import sys

from megatron_grow.config import RunConfig


def resolve_data_flags(cfg) -> None:
    """Before validation: point --data-path demo at the bundled corpus (built on first use), take the
    tokenizer a --load checkpoint carries (LOAD/tokenizer, tools/import_hf.py) when no tokenizer flag is
    given, infer --tokenizer-type when it is not given, and take --vocab-size from the tokenizer when it is
    not given (NullTokenizer: Megatron-LM's --vocab-size N becomes N + 1, its EOD included). A missing or bad
    file is left for validation to report."""
    if cfg.mock_data:
        return
    from megatron_grow.data.datasets import DATA_FLAGS
    from megatron_grow.data.tokenizer import build_tokenizer, infer_tokenizer_type, tokenizer_flag_problems

    for f in DATA_FLAGS:  # (a config built in code may give one prefix as a string)
        if isinstance(getattr(cfg, f), str):
            setattr(cfg, f, [getattr(cfg, f)])
    demo_flags = [f for f in DATA_FLAGS if "demo" in (getattr(cfg, f) or [])]
    if demo_flags:  # (demo as a prefix of any data flag: a blend may hold it)
        from megatron_grow.data.corpus import demo_corpus

        prefix, model = demo_corpus()
        for f in demo_flags:
            setattr(cfg, f, [prefix if w == "demo" else w for w in getattr(cfg, f)])
        if not (cfg.vocab_file or cfg.merge_file) and cfg.tokenizer_type in (None, "SentencePieceTokenizer"):
            cfg.tokenizer_model = cfg.tokenizer_model or model
    carried = os.path.join(cfg.load, "tokenizer") if cfg.load else None  # (tools/import_hf.py puts it there)
    if carried and os.path.isdir(carried) and not any((cfg.tokenizer_type, cfg.tokenizer_model, cfg.vocab_file,
                                                       cfg.merge_file)):
        from megatron_grow.data.tokenizer import tokenizer_flags_for_dir

        for k, v in (tokenizer_flags_for_dir(carried) or {}).items():  # the imported model's own tokenizer
            setattr(cfg, k, v)
    cfg.tokenizer_type = infer_tokenizer_type(cfg)
    if cfg.tiktoken_pattern and cfg.tokenizer_type != "TikTokenizer" and os.environ.get("RANK", "0") == "0":
        print(f"warning: --tiktoken-pattern {cfg.tiktoken_pattern} has no effect with --tokenizer-type "
              f"{cfg.tokenizer_type} (only TikTokenizer splits text with it)", file=sys.stderr)
    if cfg.tokenizer_type == "NullTokenizer":
        if cfg.vocab_size:
            cfg.vocab_size += 1
    elif cfg.tokenizer_type and not tokenizer_flag_problems(cfg):
        try:
            size = build_tokenizer(cfg).vocab_size
        except (OSError, ValueError):
            return  # data_problems names it
        if not cfg.vocab_size:  # (a --vocab-size given is kept: an embedding table larger than the tokenizer, as
            cfg.vocab_size = size  # DeepSeek-V3's 129280 rows for its 128815 tokens; a smaller one is refused)


def data_problems(cfg: RunConfig) -> list[str]:
    from megatron_grow.data.tokenizer import build_tokenizer, infer_tokenizer_type, tokenizer_flag_problems

    P, tokenizer = [], None
    from megatron_grow.data.datasets import DATA_FLAGS, flag_of

    given = [flag_of(f) for f in DATA_FLAGS if getattr(cfg, f)]
    if cfg.mock_data and given:  # (as Megatron-LM: one data source)
        P.append(f"--mock-data with {' / '.join(given)}: give one data source, synthetic tokens or the files")
    if not cfg.mock_data and infer_tokenizer_type(cfg):
        P += tokenizer_flag_problems(cfg)
        if not P:
            try:
                tokenizer = build_tokenizer(cfg)
            except (OSError, ValueError) as e:
                P.append(str(e))
    if tokenizer is not None and cfg.vocab_size and cfg.vocab_size < tokenizer.vocab_size:
        P.append(f"--vocab-size {cfg.vocab_size} is smaller than the tokenizer's {tokenizer.vocab_size} tokens; leave "
                 f"it out (the tokenizer's size is taken) or give at least {tokenizer.vocab_size}")
    per_split = any((cfg.train_data_path, cfg.valid_data_path, cfg.test_data_path))
    if not cfg.mock_data and not cfg.data_path and not per_split:
        P.append("no training data: pass --data-path PREFIX (a .bin/.idx prefix from tools/preprocess_data.py; "
                 "several, or weight-prefix pairs like 0.3 web 0.7 code, are blended), --train-data-path with "
                 "--valid-data-path, --data-path demo (the bundled corpus), or --mock-data")
    if (cfg.data_path or per_split) and not cfg.mock_data:
        from megatron_grow.data.datasets import data_path_problems

        P += data_path_problems(cfg, tokenizer)  # (every prefix of every data flag)
        if not infer_tokenizer_type(cfg):
            P.append("--data-path needs the tokenizer it was preprocessed with: --tokenizer-model (a SentencePiece "
                     ".model, an HF tokenizer.json or its directory), --vocab-file/--merge-file (GPT-2) or "
                     "--tokenizer-type NullTokenizer --vocab-size N")
    try:  # (quotes around it pass, as in Megatron-LM, which reads the numbers out of it: '99,1,0')
        parts = [float(x) for x in (cfg.split or "98,2,0").strip("'\" ").split(",")]
        if len(parts) != 3 or sum(parts) <= 0 or parts[0] <= 0 or min(parts) < 0:
            raise ValueError
    except ValueError:
        P.append(f"--split {cfg.split!r} must be three non-negative weights like 98,2,0 with a train part > 0")
    if cfg.num_workers < 0:
        P.append(f"--num-workers {cfg.num_workers} must be >= 0 (0: the samples are read in the training process)")
    return P


class Data:
    """Train / held-out iterators over the configured data source (a validated config)."""

    def __init__(self, cfg, dp_rank: int, dp_size: int):
        from megatron_grow.data.datasets import build_datasets, data_source

        tokenizer = None
        if not cfg.mock_data:
            from megatron_grow.data.tokenizer import build_tokenizer

            tokenizer = build_tokenizer(cfg)
        self.cfg, self.dp_rank, self.dp_size = cfg, dp_rank, dp_size
        n_train = cfg.train_iters * cfg.global_batch_size
        n_valid = cfg.eval_iters * cfg.global_batch_size
        self.train, self.valid, _ = build_datasets(
            None if cfg.mock_data else data_source(cfg), tokenizer,
            cfg.seq_length, cfg.seed, cfg.split, (n_train, n_valid, 0), mock=cfg.mock_data,
            vocab_size=cfg.vocab_size, path_to_cache=cfg.data_cache_path, mmap_bin_files=cfg.mmap_bin_files,
        )

    def relayout(self) -> None:
        """After the parallel groups changed (growth): this rank's new DP position."""
        from megatron.core import parallel_state as ps

        self.dp_rank, self.dp_size = ps.get_data_parallel_rank(), ps.get_data_parallel_world_size()

    def train_iterator(self, consumed_samples: int):
        from megatron_grow.data.datasets import micro_batches

        c = self.cfg
        return micro_batches(self.train, consumed_samples, c.micro_batch_size, self.dp_rank, self.dp_size,
                             c.num_workers)

    def valid_iterator(self):
        from megatron_grow.data.datasets import micro_batches

        c = self.cfg
        return micro_batches(self.valid, 0, c.micro_batch_size, self.dp_rank, self.dp_size, c.num_workers)
