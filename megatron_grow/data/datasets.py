"""megatron-core GPTDataset (or MockGPTDataset) splits, and the deterministic micro-batch order."""

from __future__ import annotations

import torch
from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig, MockGPTDataset


class MockTokenizer:
    """What --mock-data needs of a tokenizer: a vocabulary size and an end-of-document id."""

    pad = -1

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size
        self.eod = vocab_size - 1
        self.unique_identifiers = {"class": "MockTokenizer", "vocab_size": vocab_size}


def build_datasets(data_prefix, tokenizer, seq_length: int, seed: int, split: str, num_samples,
                   mock: bool = False, vocab_size: int | None = None, path_to_cache: str | None = None):
    """(train, valid, test) datasets with at least ``num_samples`` samples each; valid is held out.

    Call on every rank: rank 0 builds the index cache first, the others then read it."""
    config = GPTDatasetConfig(
        random_seed=seed, sequence_length=seq_length,
        blend=None if mock else ([data_prefix], None), split=split, path_to_cache=path_to_cache,
        tokenizer=MockTokenizer(vocab_size) if mock else tokenizer,
        reset_position_ids=False, reset_attention_mask=False, eod_mask_loss=False,
        create_attention_mask=False,
    )
    return BlendedMegatronDatasetBuilder(MockGPTDataset if mock else GPTDataset, list(num_samples),
                                         lambda: True, config).build()


def micro_batches(dataset, consumed_samples: int, micro_batch_size: int, dp_rank: int, dp_size: int):
    """Yield this DP rank's micro-batches from global sample ``consumed_samples`` on.

    The sample stream is cut into chunks of micro_batch_size x dp_size; DP rank r takes the r-th
    micro_batch_size samples of each chunk (Megatron's MegatronPretrainingSampler). A global batch
    is therefore the same consecutive samples for any DP size: DP1 with two micro-batches and DP2
    with one each train on the same data."""
    if dataset is None:
        raise ValueError("this split has no samples; give it a share in --split")
    start = consumed_samples + dp_rank * micro_batch_size
    step = micro_batch_size * dp_size
    while True:
        if start + micro_batch_size > len(dataset):
            raise IndexError(f"dataset exhausted at sample {start} of {len(dataset)}")
        samples = [dataset[i] for i in range(start, start + micro_batch_size)]
        yield {k: torch.stack([torch.as_tensor(s[k]) for s in samples]).long() if k != "loss_mask"
               else torch.stack([torch.as_tensor(s[k]) for s in samples]).float()
               for k in ("tokens", "labels", "loss_mask", "position_ids")}
        start += step
