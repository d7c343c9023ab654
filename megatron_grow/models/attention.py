"""Core attention for megatron-core's local layer spec, built on torch's scaled_dot_product_attention.

Drop-in for ``megatron.core.transformer.dot_product_attention.DotProductAttention`` in a
``ModuleSpec``: same constructor, same ``[s, b, heads, dim]`` inputs, ``[s, b, heads*v_dim]``
output. Unlike the local default it runs the fused SDPA kernel (faster on CPU, flash/efficient
kernels on GPU), supports GQA without materialising repeated keys on the flash path, and lets
query/key and value have different head sizes (needed by multi-latent attention).
"""

from __future__ import annotations

import contextlib
import math

import torch.nn.functional as F
from megatron.core import parallel_state
from megatron.core.tensor_parallel import get_cuda_rng_tracker
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.module import MegatronModule


class SDPAttention(MegatronModule):
    def __init__(
        self,
        config,
        layer_number: int,
        attn_mask_type: AttnMaskType,
        attention_type: str,
        attention_dropout: float | None = None,
        softmax_scale: float | None = None,
        cp_comm_type: str | None = None,
        pg_collection=None,
        k_channels: int | None = None,  # query/key head size (MLA: nope + rope dims)
        v_channels: int | None = None,  # value head size (MLA's v_head_dim)
    ):
        super().__init__(config=config)
        if config.context_parallel_size != 1:
            raise ValueError("SDPAttention does not support context parallelism; use Transformer Engine")
        tp = parallel_state.get_tensor_model_parallel_world_size() if pg_collection is None else pg_collection.tp.size()
        self.heads = config.num_attention_heads // tp
        self.groups = config.num_query_groups // tp
        self.attn_mask_type = attn_mask_type
        self.dropout = config.attention_dropout if attention_dropout is None else attention_dropout
        self.softmax_scale = (softmax_scale if softmax_scale is not None
                              else 1.0 / math.sqrt(k_channels or config.kv_channels))

    def forward(self, query, key, value, attention_mask, attn_mask_type=None, attention_bias=None,
                packed_seq_params=None):
        if packed_seq_params is not None or attention_bias is not None:
            raise ValueError("SDPAttention supports neither packed sequences nor attention bias")
        mask_type = attn_mask_type or self.attn_mask_type
        # [s, b, n, d] -> [b, n, s, d]
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))
        if self.heads != self.groups:
            rep = self.heads // self.groups
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        causal = mask_type == AttnMaskType.causal
        mask = None
        if not causal and attention_mask is not None:
            mask = ~attention_mask  # megatron's mask marks positions to drop with True
        dropout = self.dropout if self.training else 0.0
        # heads are split over TP ranks: attention dropout draws from the per-TP-rank RNG, as in
        # megatron's own core attention
        with get_cuda_rng_tracker().fork() if dropout > 0 else contextlib.nullcontext():
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                                 dropout_p=dropout, scale=self.softmax_scale)
        s, b = query.shape[0], query.shape[1]
        return out.permute(2, 0, 1, 3).reshape(s, b, -1)
