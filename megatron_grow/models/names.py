"""Rules on parameter names, one home each. Names are global: ``decoder.layers.<global layer>.``
(pipeline-local indices mapped), routed experts ``...local_experts.<global expert>.``."""

from __future__ import annotations

import re

LAYER = re.compile(r"^(.*decoder\.layers\.)(\d+)(\..*)$")  # (prefix, layer index, rest)
EXPERT = re.compile(r"^(.*\.local_experts\.)(\d+)(\..*)$")  # (prefix, expert index, rest)
# residual-branch output projections (modules): attention's, the dense MLP's, every expert's and the
# shared expert's fc2; copy_zeroL zeroes them, the init scales them by 1/sqrt(2 L), depth-muP their output
RESIDUAL_OUTPUTS = ("self_attention.linear_proj", "linear_fc2")
ROUTER = "mlp.router.weight"


def layer_index(name: str) -> int | None:
    """The decoder layer a parameter belongs to (None: embeddings, final norm, head)."""
    m = LAYER.match(name)
    return int(m.group(2)) if m else None


def is_expert(name: str) -> bool:
    """A routed expert's parameter (split over the expert-parallel group, not the DP group)."""
    return ".local_experts." in name


def _is_residual_output_module(path: str) -> bool:
    return any(path == r or path.endswith("." + r) for r in RESIDUAL_OUTPUTS)


def is_residual_output(name: str) -> bool:
    """A residual-branch output projection's weight or bias."""
    return _is_residual_output_module(name.rsplit(".", 1)[0])


def residual_output_modules(layer) -> list:
    """The residual-branch output projections of one decoder layer (dense or MoE)."""
    return [m for path, m in layer.named_modules() if _is_residual_output_module(path)]


def in_layer_matrix(name: str, ndim: int) -> bool:
    """A 2-D weight inside a decoder layer: muP's hidden matrices (init 1/sqrt(m), Adam LR 1/m). The
    MoE router counts: its fan-in grows with the width and it has no output multiplier, so its LR
    must shrink like theirs."""
    return ndim == 2 and LAYER.match(name) is not None


def is_muon_matrix(name: str, ndim: int) -> bool:
    """What Muon orthogonalises: the in-layer matrices except the MoE router, a small readout to
    the experts that NSGD steps like the head."""
    return in_layer_matrix(name, ndim) and not name.endswith(ROUTER)
