"""Expert load balance of MoE models, for the metrics stream.

Each MoE layer's router returns (probs, routing_map), routing_map [tokens, experts] marking the
top-k experts of every token. A forward hook counts the tokens routed to each expert during
training forward passes (not eval); at a log interval the counts are summed over all ranks (tokens
are split over DP, EP and, under sequence parallelism, TP ranks; each pipeline stage holds its own
layers) and reported per global layer as max / mean tokens per expert (1.0: perfectly balanced;
num_experts / topk: every token to the same experts).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.distributed as dist


class ExpertLoad:
    def __init__(self, model, num_layers: int, num_experts: int, device: torch.device):
        self.counts = torch.zeros(max(num_layers, 1), num_experts, dtype=torch.float64, device=device)
        for layer in model.decoder.layers:
            router = getattr(layer.mlp, "router", None)
            if router is not None:
                router.register_forward_hook(partial(self._count, layer.layer_number - 1))

    def _count(self, index: int, router, inputs, output) -> None:
        if router.training:
            self.counts[index] += output[1].sum(dim=0).to(self.counts.dtype)

    def collect(self) -> dict[str, float]:
        """{global layer index: max/mean tokens per expert} since the last call (collective)."""
        counts = self.counts.clone()
        self.counts.zero_()
        dist.all_reduce(counts)
        return {str(i): round((row.max() / row.mean()).item(), 4) for i, row in enumerate(counts) if row.sum() > 0}


def clear_aux_loss_tracker() -> None:
    """megatron-core accumulates each MoE layer's aux losses in a global tracker sized by the first
    model's depth; reset it every step (we do not log it) and drop it at growth (new depth)."""
    from megatron.core.transformer.moe.moe_utils import get_moe_layer_wise_logging_tracker

    get_moe_layer_wise_logging_tracker().clear()
