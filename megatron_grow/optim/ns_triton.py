"""Triton backend of Newton-Schulz (``--ns-backend triton``): the same iteration as ``ns_torch``
from two kernels, each launched once per step with a batch grid axis:

  sym_gram   out = alpha * X X^T + beta * C, computing only the upper-triangle tiles (i <= j) of the
             symmetric result and writing each tile also mirrored to (j, i). It gives A = X X^T
             (alpha 1, beta 0) and, since A is symmetric (A A = A A^T), B = b A + c A A in one launch
             (X = A, C = A, alpha c, beta b).
  mm_add     X_new = a * X + B @ X.

bf16 on GPU, fp32 on CPU, where the kernels run in Triton's interpreter (TRITON_INTERPRET=1;
slow, for tests). ``triton.jit`` reads TRITON_INTERPRET when it decorates, so the kernels are
decorated lazily, once per mode, at their first launch, and they call only Triton builtins (not
``tl.zeros``/``tl.cdiv``, which ``import triton`` decorated already): setting the variable after
triton or this module was imported still works.
"""

import functools
import os

import torch

from megatron_grow.optim.ns_common import EPS, QUINTIC, wide

try:
    import triton
    import triton.language as tl
except ImportError:  # the module still imports; unavailable_reason says why
    triton = tl = None


def _interpreting() -> bool:
    knobs = getattr(triton, "knobs", None)  # triton >= 3.4 reads the variable live
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on")


def unavailable_reason(device) -> str | None:
    """Why the Triton backend cannot run on ``device`` (None when it can)."""
    if triton is None:
        return "Triton is not installed (pip install triton)"
    if torch.device(device).type == "cuda" or _interpreting():
        return None
    return "Triton kernels need a CUDA device (or TRITON_INTERPRET=1 on CPU)"


# --- kernels (plain functions; decorated by _kernels) --------------------------------------------
# No "from __future__ import annotations" here: the interpreter recognises constexpr arguments by
# their evaluated annotation, which needs tl.
if triton is not None:
    def _sym_gram_kernel(x_ptr, c_ptr, out_ptr, pairs_ptr, tiles_ptr, M, K, alpha, beta,
                         sxb, sxm, sxk, scb, scm, scn, sob, som, son,
                         HAS_C: tl.constexpr, TRACE: tl.constexpr, BM: tl.constexpr, BK: tl.constexpr):
        pid = tl.program_id(0)
        bid = tl.program_id(1)
        i = tl.load(pairs_ptr + 2 * pid)  # tile row
        j = tl.load(pairs_ptr + 2 * pid + 1)  # tile column, i <= j
        rows = i * BM + tl.arange(0, BM)
        cols = j * BM + tl.arange(0, BM)
        ks = tl.arange(0, BK)
        x_ptr += bid * sxb
        acc = tl.full((BM, BM), 0.0, tl.float32)
        for k0 in range(0, K, BK):
            kk = k0 + ks
            a = tl.load(x_ptr + rows[:, None] * sxm + kk[None, :] * sxk,
                        mask=(rows[:, None] < M) & (kk[None, :] < K), other=0.0)
            bt = tl.load(x_ptr + cols[None, :] * sxm + kk[:, None] * sxk,  # X[cols, kk]^T
                         mask=(cols[None, :] < M) & (kk[:, None] < K), other=0.0)
            acc = tl.dot(a, bt, acc)
        acc = alpha * acc
        mask = (rows[:, None] < M) & (cols[None, :] < M)
        if HAS_C:
            acc += beta * tl.load(c_ptr + bid * scb + rows[:, None] * scm + cols[None, :] * scn,
                                  mask=mask, other=0.0).to(tl.float32)
        out = acc.to(out_ptr.dtype.element_ty)
        out_ptr += bid * sob
        tl.store(out_ptr + rows[:, None] * som + cols[None, :] * son, out, mask=mask)
        if i != j:  # the mirrored tile (j, i) is this tile's transpose
            tl.store(out_ptr + cols[:, None] * som + rows[None, :] * son, tl.trans(out),
                     mask=(cols[:, None] < M) & (rows[None, :] < M))
        if TRACE:  # tests: count the programs that computed tile (i, j)
            n_tiles = (M + BM - 1) // BM
            tl.atomic_add(tiles_ptr + bid * n_tiles * n_tiles + i * n_tiles + j, 1)


    def _mm_add_kernel(b_ptr, x_ptr, out_ptr, M, N, a,
                       sbb, sbm, sbk, sxb, sxm, sxn, sob, som, son,
                       BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
        pid = tl.program_id(0)
        bid = tl.program_id(1)
        n_col_tiles = (N + BN - 1) // BN
        rows = (pid // n_col_tiles) * BM + tl.arange(0, BM)
        cols = (pid % n_col_tiles) * BN + tl.arange(0, BN)
        ks = tl.arange(0, BK)
        b_ptr += bid * sbb
        x_ptr += bid * sxb
        acc = tl.full((BM, BN), 0.0, tl.float32)
        for k0 in range(0, M, BK):  # B is M x M
            kk = k0 + ks
            b = tl.load(b_ptr + rows[:, None] * sbm + kk[None, :] * sbk,
                        mask=(rows[:, None] < M) & (kk[None, :] < M), other=0.0)
            x = tl.load(x_ptr + kk[:, None] * sxm + cols[None, :] * sxn,
                        mask=(kk[:, None] < M) & (cols[None, :] < N), other=0.0)
            acc = tl.dot(b, x, acc)
        mask = (rows[:, None] < M) & (cols[None, :] < N)
        acc += a * tl.load(x_ptr + rows[:, None] * sxm + cols[None, :] * sxn, mask=mask, other=0.0).to(tl.float32)
        tl.store(out_ptr + bid * sob + rows[:, None] * som + cols[None, :] * son,
                 acc.to(out_ptr.dtype.element_ty), mask=mask)


@functools.cache
def _kernels(interpret: bool):
    del interpret  # the cache key: triton.jit reads TRITON_INTERPRET now
    return triton.jit(_sym_gram_kernel), triton.jit(_mm_add_kernel)


@functools.cache
def _upper_pairs(n_tiles: int, device) -> torch.Tensor:
    """(i, j) for i <= j, flattened: the sym_gram grid's program -> tile map."""
    i, j = torch.triu_indices(n_tiles, n_tiles)
    return torch.stack([i, j], dim=1).flatten().to(device=device, dtype=torch.int32)


def _block(device, block):
    return block or (128 if torch.device(device).type == "cuda" else 16)


def _launch_opts(device):
    return {"num_warps": 8, "num_stages": 3} if torch.device(device).type == "cuda" else {}


def sym_gram(X: torch.Tensor, C: torch.Tensor | None = None, alpha: float = 1.0, beta: float = 0.0,
             out: torch.Tensor | None = None, block: int | None = None,
             tiles: torch.Tensor | None = None) -> torch.Tensor:
    """``alpha * X X^T + beta * C`` for X (m, k) or (batch, m, k) and a symmetric C, from the
    upper-triangle tiles only (T(T+1)/2 programs per matrix for T = ceil(m / block)). ``out``
    must not alias X or C. ``tiles`` (batch, T, T) int32, if given, counts the programs per tile."""
    squeeze = X.ndim == 2
    X3 = X.unsqueeze(0) if squeeze else X
    nb, m, k = X3.shape
    bm = _block(X.device, block)
    n_tiles = triton.cdiv(m, bm)
    out = torch.empty(nb, m, m, device=X.device, dtype=X.dtype) if out is None else out.view(nb, m, m)
    C3 = out if C is None else C.view(nb, m, m)  # out is a dummy pointer when HAS_C is False
    pairs = _upper_pairs(n_tiles, X.device)
    gram, _ = _kernels(_interpreting())
    gram[(n_tiles * (n_tiles + 1) // 2, nb)](
        X3, C3, out, pairs, pairs if tiles is None else tiles, m, k, alpha, beta,
        *X3.stride(), *C3.stride(), *out.stride(),
        HAS_C=C is not None, TRACE=tiles is not None, BM=bm, BK=min(64, bm) if X.is_cuda else bm,
        **_launch_opts(X.device))
    return out[0] if squeeze else out


def mm_add(B: torch.Tensor, X: torch.Tensor, a: float, out: torch.Tensor | None = None,
           block: int | None = None) -> torch.Tensor:
    """``a * X + B @ X`` for B (m, m) and X (m, n), or batches of them; ``out`` must not alias X."""
    squeeze = X.ndim == 2
    B3, X3 = (B.unsqueeze(0), X.unsqueeze(0)) if squeeze else (B, X)
    nb, m, n = X3.shape
    bm = _block(X.device, block)
    out = torch.empty_like(X3) if out is None else out.view(nb, m, n)
    _, mm = _kernels(_interpreting())
    mm[(triton.cdiv(m, bm) * triton.cdiv(n, bm), nb)](
        B3, X3, out, m, n, a, *B3.stride(), *X3.stride(), *out.stride(),
        BM=bm, BN=bm, BK=min(64, bm) if X.is_cuda else bm, **_launch_opts(X.device))
    return out[0] if squeeze else out


def ns_triton(G: torch.Tensor, steps: int = 5, coefficients=QUINTIC, block: int | None = None) -> torch.Tensor:
    """Newton-Schulz of ``G`` (..., m, n) with the Triton kernels; same semantics as ``ns_torch``."""
    why = unavailable_reason(G.device)
    if why:
        raise RuntimeError(why)
    a, b, c = coefficients
    X = G.to(torch.bfloat16 if G.is_cuda else torch.float32)
    X = X if wide(G) else X.mT
    shape = X.shape
    X = X.reshape(-1, *shape[-2:]).contiguous()
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + EPS)
    nb, m, _ = X.shape
    A = torch.empty(nb, m, m, device=X.device, dtype=X.dtype)
    B = torch.empty_like(A)
    Y = torch.empty_like(X)
    for _ in range(steps):
        sym_gram(X, out=A, block=block)  # A = X X^T
        sym_gram(A, C=A, alpha=c, beta=b, out=B, block=block)  # B = c A A^T + b A
        mm_add(B, X, a, out=Y, block=block)  # Y = a X + B X
        X, Y = Y, X
    X = X.reshape(shape)
    return (X if wide(G) else X.mT).to(G.dtype)
