"""Transformer Engine backend of Newton-Schulz (``--ns-backend te``).

What TE offers (read from NVIDIA/TransformerEngine, transformer_engine/pytorch/optimizers/
newton_schulz.py; first added as transformer_engine/pytorch/newton_schulz.py with another
signature by PR #2706, "Newton-Schulz via cuSOLVERMp", early 2026; that path is now a re-export.
Only the current API is wrapped):

  CusolverMpCtx(group)                       a cuSolverMp context over an NCCL process group
                                             (collective to create; reuse it; .destroy())
  newton_schulz(x, ctx, num_iterations=5, coefficients=None) -> None
      in place, x 2-D, contiguous, CUDA, float32 or bfloat16, columns split across the group's
      ranks; coefficients one (a, b, c) per iteration of x <- a x + b (x x^T) x + c (x x^T)^2 x.

It is a distributed cuSolverMp routine: it needs TE built with NVTE_WITH_CUSOLVERMP=1 (off by
default) and torch.distributed with NCCL. Here every rank orthogonalises whole matrices, so the
context is over a one-rank group of its own, made collectively by every rank when the optimizer
is built (newton_schulz.prepare); batches run one matrix at a time. We normalise like ns_torch
before the call (newer TE normalises too, which then changes nothing).
Untested here: no TE and no GPU on the dev machine.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from megatron_grow.optim.ns_common import EPS, QUINTIC, wide

_NEEDS = ("needs a 2026 TE 2.x with transformer_engine.pytorch.optimizers.newton_schulz, "
          "built with NVTE_WITH_CUSOLVERMP=1")
_CTX = {}


def _te_newton_schulz():
    from transformer_engine.pytorch.optimizers.newton_schulz import (
        CusolverMpCtx,
        newton_schulz,
    )

    return CusolverMpCtx, newton_schulz


def unavailable_reason(device) -> str | None:
    """Why the TE backend cannot run on ``device`` (None when it can)."""
    try:
        import transformer_engine
    except ImportError:
        return "Transformer Engine is not installed"
    except (OSError, RuntimeError) as e:  # e.g. missing CUDA libraries
        return f"Transformer Engine does not import ({e})"
    try:
        _te_newton_schulz()
        import transformer_engine_torch as tex
    except ImportError:
        version = getattr(transformer_engine, "__version__", "?")
        return f"this Transformer Engine ({version}) has no Newton-Schulz ({_NEEDS})"
    except (OSError, RuntimeError) as e:
        return f"Transformer Engine's PyTorch extension does not import ({e})"
    if not hasattr(tex, "newton_schulz"):
        return f"this Transformer Engine build has no cuSolverMp Newton-Schulz ({_NEEDS})"
    if torch.device(device).type != "cuda":
        return "Transformer Engine's Newton-Schulz needs a CUDA device"
    if not dist.is_initialized() or "nccl" not in dist.get_backend():
        return "Transformer Engine's Newton-Schulz (cuSolverMp) needs torch.distributed with the NCCL backend"
    return None


def _context():
    """A cuSolverMp context over this rank alone; the first call is collective (every rank, from
    newton_schulz.prepare)."""
    device = torch.cuda.current_device()
    if device not in _CTX:
        CusolverMpCtx, _ = _te_newton_schulz()
        group, _ = dist.new_subgroups(group_size=1, backend="nccl")
        _CTX[device] = CusolverMpCtx(group)
    return _CTX[device]


def ns_te(G: torch.Tensor, steps: int = 5, coefficients=QUINTIC) -> torch.Tensor:
    """Newton-Schulz of ``G`` (..., m, n) with TE's cuSolverMp routine; same semantics as ns_torch."""
    why = unavailable_reason(G.device)
    if why:
        raise RuntimeError(why)
    _, newton_schulz = _te_newton_schulz()
    ctx = _context()
    X = G.to(torch.bfloat16)
    X = X if wide(G) else X.mT
    shape = X.shape
    X = X.reshape(-1, *shape[-2:]).contiguous()
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + EPS)
    for x in X:  # 2-D only; each x is a contiguous view, orthogonalised in place
        newton_schulz(x, ctx, steps, coefficients=[tuple(coefficients)] * steps)
    X = X.reshape(shape)
    return (X if wide(G) else X.mT).to(G.dtype)
