"""What the Newton-Schulz dispatcher (newton_schulz.py) and its backends (ns_triton.py, ns_te.py) share:
the default polynomial, the normalisation's epsilon, and which orientation of a matrix they iterate on.
It imports nothing of the package, so the backends need not import the dispatcher that loads them."""

from __future__ import annotations

import torch

QUINTIC = (3.4445, -4.7750, 2.0315)
EPS = 1e-7


def wide(G: torch.Tensor) -> bool:
    """Whether ``G`` (..., m, n) is iterated as it is rather than transposed (m <= n: X X^T is the smaller Gram)."""
    return G.shape[-2] <= G.shape[-1]
