"""Data for the trainer: the flags resolved to files, and the train / held-out iterators."""

from __future__ import annotations

import os

from megatron_grow.config import RunConfig


def resolve_data_flags(cfg) -> None:
    """Before validation: point --data-path demo at the bundled corpus (built on first use) and take
    --vocab-size from the tokenizer. A missing file is left for validation to report."""
    if cfg.mock_data:
        return
    if cfg.data_path == "demo":
        from megatron_grow.data.corpus import demo_corpus

        cfg.data_path, model = demo_corpus()
        cfg.tokenizer_model = cfg.tokenizer_model or model
    if cfg.tokenizer_model and os.path.isfile(cfg.tokenizer_model):
        from megatron_grow.data.tokenizer import Tokenizer

        cfg.vocab_size = Tokenizer(cfg.tokenizer_model).vocab_size


def data_problems(cfg: RunConfig) -> list[str]:
    P = []
    if not cfg.mock_data and not cfg.data_path:
        P.append("no training data: pass --data-path PREFIX (a .bin/.idx prefix from tools/preprocess_data.py), "
                 "--data-path demo (the bundled corpus), or --mock-data")
    if cfg.data_path and cfg.data_path != "demo" and not cfg.mock_data:
        for ext in (".bin", ".idx"):
            if not os.path.isfile(cfg.data_path + ext):
                P.append(f"--data-path {cfg.data_path}: file {cfg.data_path + ext} not found; "
                         f"create it with tools/preprocess_data.py")
        if all(os.path.isfile(cfg.data_path + ext) for ext in (".bin", ".idx")):
            from megatron_grow.data.datasets import data_file_problems, token_range_problems

            P += data_file_problems(cfg.data_path)
            if not P and cfg.tokenizer_model and os.path.isfile(cfg.tokenizer_model) and cfg.vocab_size:
                P += token_range_problems(cfg.data_path, cfg.vocab_size, cfg.tokenizer_model)
        if not cfg.tokenizer_model:
            P.append("--data-path needs --tokenizer-model (the sentencepiece model it was preprocessed with)")
    if cfg.tokenizer_model and not os.path.isfile(cfg.tokenizer_model):
        P.append(f"--tokenizer-model {cfg.tokenizer_model}: file not found")
    try:
        parts = [float(x) for x in cfg.split.split(",")]
        if len(parts) != 3 or sum(parts) <= 0 or parts[0] <= 0 or min(parts) < 0:
            raise ValueError
    except ValueError:
        P.append(f"--split {cfg.split!r} must be three non-negative weights like 98,2,0 with a train part > 0")
    return P


class Data:
    """Train / held-out iterators over the configured data source (a validated config)."""

    def __init__(self, cfg, dp_rank: int, dp_size: int):
        from megatron_grow.data.datasets import build_datasets

        tokenizer = None
        if not cfg.mock_data:
            from megatron_grow.data.tokenizer import Tokenizer

            tokenizer = Tokenizer(cfg.tokenizer_model)
        self.cfg, self.dp_rank, self.dp_size = cfg, dp_rank, dp_size
        n_train = cfg.train_iters * cfg.global_batch_size
        n_valid = cfg.eval_iters * cfg.global_batch_size
        self.train, self.valid, _ = build_datasets(
            None if cfg.mock_data else cfg.data_path, tokenizer,
            cfg.seq_length, cfg.seed, cfg.split, (n_train, n_valid, 0), mock=cfg.mock_data,
            vocab_size=cfg.vocab_size, path_to_cache=cfg.data_cache_path,
        )

    def relayout(self) -> None:
        """After the parallel groups changed (growth): this rank's new DP position."""
        from megatron.core import parallel_state as ps

        self.dp_rank, self.dp_size = ps.get_data_parallel_rank(), ps.get_data_parallel_world_size()

    def train_iterator(self, consumed_samples: int):
        from megatron_grow.data.datasets import micro_batches

        c = self.cfg
        return micro_batches(self.train, consumed_samples, c.micro_batch_size, self.dp_rank, self.dp_size)

    def valid_iterator(self):
        from megatron_grow.data.datasets import micro_batches

        c = self.cfg
        return micro_batches(self.valid, 0, c.micro_batch_size, self.dp_rank, self.dp_size)
