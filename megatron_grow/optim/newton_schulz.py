"""Newton-Schulz orthogonalisation behind one function, with interchangeable backends.

``newton_schulz(G)`` maps a matrix (or a batch of matrices, leading dims) to an approximately
orthogonal one with the same singular vectors (Muon's update direction): ``steps`` iterations of
the odd polynomial ``X <- a X + b (X X^T) X + c (X X^T)^2 X`` after scaling G to unit Frobenius
norm, on the wide orientation (X X^T is the smaller Gram matrix).

Backends (``--ns-backend``):
  torch   plain torch matmuls; bf16 on GPU, fp32 on CPU unless told (--bf16 runs: bf16 on CPU too)
  triton  a Triton kernel that computes the symmetric X X^T once per iteration from its upper
          triangle tiles only (mirrored) and fuses the polynomial (megatron_grow/optim/ns_triton.py)
  te      Transformer Engine's Newton-Schulz, where the installed TE provides one
  auto    the fastest of those available on the device (timed once per device)

``newton_schulz_reference`` is the same iteration in float64, the yardstick of the tests.
``newton_schulz_sharded`` runs it on tensor-parallel shards with one all-reduce of the Gram
matrix per iteration (exact: the Gram matrix contracts over the sharded dimension).
"""

from __future__ import annotations

import time

import torch
import torch.distributed as dist

from megatron_grow.config import NS_BACKENDS as BACKENDS
from megatron_grow.optim.ns_common import EPS, QUINTIC, wide


def _iterate(X: torch.Tensor, steps: int, coefficients, gram=lambda A: A) -> torch.Tensor:
    a, b, c = coefficients
    for _ in range(steps):
        A = gram(X @ X.mT)
        B = torch.baddbmm(A, A, A, beta=b, alpha=c) if A.ndim == 3 else b * A + c * (A @ A)
        X = torch.baddbmm(X, B, X, beta=a) if X.ndim == 3 else a * X + B @ X
    return X


def ns_torch(G: torch.Tensor, steps: int = 5, coefficients=QUINTIC, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The torch backend: bf16 on GPU, fp32 on CPU unless ``dtype`` says otherwise."""
    dtype = dtype or (torch.bfloat16 if G.is_cuda else torch.float32)
    X = G.to(dtype)
    X = X if wide(G) else X.mT
    shape = X.shape
    X = X.reshape(-1, *shape[-2:]) if X.ndim > 3 else X
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + EPS)
    X = _iterate(X, steps, coefficients).reshape(shape)
    return (X if wide(G) else X.mT).to(G.dtype)


def newton_schulz_reference(G: torch.Tensor, steps: int = 5, coefficients=QUINTIC) -> torch.Tensor:
    """The same iteration in float64 (the tests' reference)."""
    return ns_torch(G.double(), steps, coefficients, dtype=torch.float64)


def newton_schulz_sharded(G: torch.Tensor, shard_dim: int, group, steps: int = 5, coefficients=QUINTIC,
                          dtype: torch.dtype | None = None) -> torch.Tensor:
    """Newton-Schulz of the full matrix whose shards along ``shard_dim`` (-2 or -1) the ranks of
    ``group`` hold; returns this rank's shard of the result. One all-reduce of X X^T per iteration
    (contracting over the sharded dimension), so the result equals the unsharded one up to
    rounding. Torch ops only; the Gram matrix is the square of the unsharded side. ``dtype`` as in ns_torch."""
    dtype = dtype or (torch.bfloat16 if G.is_cuda else torch.float32)
    X = G.to(dtype)
    X = X if shard_dim in (-1, G.ndim - 1) else X.mT  # shards along the last dim

    def reduced(t):
        dist.all_reduce(t, group=group)
        return t

    sq = reduced(X.float().pow(2).sum(dim=(-2, -1), keepdim=True))
    X = X / (sq.sqrt().to(dtype) + EPS)
    X = _iterate(X, steps, coefficients, gram=reduced)
    return (X if shard_dim in (-1, G.ndim - 1) else X.mT).to(G.dtype)


# --- backend selection ---------------------------------------------------------------------------
def unavailable_reason(backend: str, device: torch.device) -> str | None:
    """Why ``backend`` cannot run on ``device`` (None when it can)."""
    if backend == "torch":
        return None
    if backend == "triton":
        from megatron_grow.optim import ns_triton

        return ns_triton.unavailable_reason(device)
    if backend == "te":
        from megatron_grow.optim import ns_te

        return ns_te.unavailable_reason(device)
    return f"unknown Newton-Schulz backend {backend!r}; choose one of auto, {', '.join(BACKENDS)}"


def _function(backend: str):
    if backend == "torch":
        return ns_torch
    if backend == "triton":
        from megatron_grow.optim.ns_triton import ns_triton

        return ns_triton
    from megatron_grow.optim.ns_te import ns_te

    return ns_te


_AUTO: dict[str, str] = {}


def resolve_backend(backend: str, device: torch.device) -> str:
    """A concrete backend name for ``--ns-backend`` on ``device`` (raises with the reason when the
    requested one cannot run). ``auto`` times each available backend once on a 1024x1024 matrix."""
    device = torch.device(device)
    if backend != "auto":
        why = unavailable_reason(backend, device)
        if why:
            raise ValueError(f"--ns-backend {backend}: {why}")
        return backend
    if device.type != "cuda":  # (Triton on CPU is its interpreter: for tests, never the fastest)
        return "torch"
    if device.type not in _AUTO:
        usable = [b for b in BACKENDS if unavailable_reason(b, device) is None]
        if len(usable) == 1:
            _AUTO[device.type] = "torch"
        else:
            G = torch.randn(1024, 1024, device=device, dtype=torch.bfloat16)
            timing = {}
            for b in usable:
                fn = _function(b)
                fn(G)  # compile / warm up
                torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                for _ in range(5):
                    fn(G)
                torch.cuda.synchronize(device)
                timing[b] = time.perf_counter() - t0
            _AUTO[device.type] = min(timing, key=timing.get)
    return _AUTO[device.type]


def prepare(backend: str, device) -> str:
    """Resolve ``--ns-backend`` once, with every rank present (optimizer construction): all ranks
    get the same concrete backend (rank 0's choice under ``auto``, whose timings may differ per
    rank), and collective set-up (TE's cuSolverMp context) happens here rather than at a first
    call that some ranks may reach late or never (DP spread, stages without matrices)."""
    name = resolve_backend(backend, device)
    if backend == "auto" and dist.is_initialized() and dist.get_world_size() > 1:
        choice = [name]
        dist.broadcast_object_list(choice, src=0)
        name = choice[0]
    if name == "te":
        from megatron_grow.optim.ns_te import _context

        _context()
    return name


def newton_schulz(G: torch.Tensor, steps: int = 5, coefficients=QUINTIC, backend: str = "auto",
                  dtype: torch.dtype | None = None) -> torch.Tensor:
    """Orthogonalise ``G`` (..., m, n) with ``steps`` Newton-Schulz iterations on ``backend``; ``dtype``
    (torch backend; None: bf16 on GPU, fp32 on CPU) is what its matmuls run in (Triton and TE: bf16 on GPU)."""
    name = resolve_backend(backend, G.device)
    return ns_torch(G, steps, coefficients, dtype) if name == "torch" else _function(name)(G, steps, coefficients)
