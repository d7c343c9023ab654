"""Two local-spec modules that megatron-core 0.16 lacks for MLA + MoE under tensor parallelism.

``SequenceParallelNorm``: megatron's ``WrappedTorchNorm`` refuses ``sequence_parallel`` (which MoE
with TP > 1 requires). The norm is the same torch LayerNorm / RMSNorm; under sequence parallelism
each TP rank sees a slice of the sequence, so its weight grads are partial sums: the weights are
tagged ``sequence_parallel`` and megatron's ``finalize_model_grads`` all-reduces them over TP.

``DuplicatedLinear``: MLA's kv down-projection, replicated on every TP rank (what megatron builds
from TE's ``TELinear(parallel_mode="duplicated")``). megatron's local alternative, a column-parallel
linear, gathers the output but then feeds the RoPE part of the keys (k_pos_emb) to each rank's
heads without a reduction in backward, so at TP > 1 its gradient misses the other ranks' heads
(measured: 2e-4 relative error in that weight's grad at TP2). Duplicated, MLA gathers k_pos_emb
over the sequence-parallel region, whose backward sums over TP; the weight's grads (partial under
sequence parallelism) are tagged like the norms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _tag(module: torch.nn.Module, config) -> torch.nn.Module:
    for p in module.parameters():
        p.sequence_parallel = config.sequence_parallel
    return module


class SequenceParallelNorm:
    def __new__(cls, config, hidden_size: int, eps: float = 1e-5, persist_layer_norm: bool = False,
                zero_centered_gamma: bool = False, normalization: str = "LayerNorm"):
        rms = config.normalization == "RMSNorm"
        if config.layernorm_zero_centered_gamma:
            norm = ZeroCenteredRMSNorm if rms else ZeroCenteredLayerNorm
        else:
            norm = torch.nn.RMSNorm if rms else torch.nn.LayerNorm
        return _tag(norm(normalized_shape=hidden_size, eps=eps), config)


class ZeroCenteredRMSNorm(torch.nn.RMSNorm):
    """RMSNorm scaled by 1 + weight, the weight starting at 0 (--apply-layernorm-1p, megatron-core's
    layernorm_zero_centered_gamma, as Transformer Engine's norms compute it): the same function as a plain
    norm whose scale is 1 + weight (HF export adds the 1)."""

    def reset_parameters(self) -> None:
        torch.nn.init.zeros_(self.weight)

    def forward(self, x):
        return F.rms_norm(x, self.normalized_shape, self.weight + 1, self.eps)


class ZeroCenteredLayerNorm(torch.nn.LayerNorm):
    """LayerNorm scaled by 1 + weight (see ZeroCenteredRMSNorm)."""

    def reset_parameters(self) -> None:
        torch.nn.init.zeros_(self.weight)
        torch.nn.init.zeros_(self.bias)

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight + 1, self.bias, self.eps)


class DuplicatedLinear(torch.nn.Module):
    def __init__(self, input_size: int, output_size: int, *, config, init_method, bias: bool = False,
                 skip_bias_add: bool = False, parallel_mode: str = "duplicated", **unused):
        super().__init__()
        if bias or parallel_mode != "duplicated":
            raise ValueError("DuplicatedLinear is MLA's bias-free, TP-replicated kv down-projection")
        self.weight = torch.nn.Parameter(torch.empty(output_size, input_size, dtype=config.params_dtype))
        init_method(self.weight)
        _tag(self, config)

    def forward(self, x):
        return F.linear(x, self.weight), None


def megatron_without_te() -> None:
    """Fix the places where megatron-core 0.16 half-assumes Transformer Engine when it is not
    installed (idempotent; nothing happens when TE imports): multi-latent attention tests
    ``isinstance(x, TELinear)`` with TELinear None (its HAVE_TE flag is set False) and builds its
    replicated kv down-projection only from TELinear (bound to ``DuplicatedLinear``); the MoE router
    calls ``te_general_gemm``, a name left unbound when TE's import fails (bound to None, which
    selects megatron's own torch path). Called by build_model before any spec is made."""
    from megatron.core.transformer import multi_latent_attention
    from megatron.core.transformer.moe import moe_utils

    from megatron_grow.platform import te_available

    if te_available():
        return
    multi_latent_attention.HAVE_TE = False
    multi_latent_attention.TELinear = DuplicatedLinear
    if not hasattr(moe_utils, "te_general_gemm"):
        moe_utils.te_general_gemm = None
