"""Newton-Schulz backends against the float64 reference.

torch: always. triton: in Triton's interpreter on CPU (TRITON_INTERPRET=1, set per test with
monkeypatch; ns_triton decorates its kernels at first launch and calls only Triton builtins, so
this works whatever imported triton first), at tiny sizes with 16-wide tiles. te: skipped, saying
why, unless Transformer Engine with its cuSolverMp Newton-Schulz, CUDA and NCCL are all here.
Each case draws its inputs from a seed of its own shape and dtype (the same every run; printed on
failure).
"""

import zlib

import pytest
import torch

from megatron_grow.optim import newton_schulz as ns
from megatron_grow.optim.newton_schulz import (
    newton_schulz,
    newton_schulz_reference,
    ns_torch,
    resolve_backend,
)

FP32_TOL = 1e-4  # relative Frobenius error; observed ~1.5e-6


def _random(*shape, dtype=torch.float32):
    seed = zlib.crc32(repr((shape, dtype)).encode())  # deterministic, and different per case
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype), seed


def _rel_err(y, ref):
    return ((y.double() - ref).norm() / ref.norm()).item()


# --- torch backend ---------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(64, 64), (32, 96), (96, 32), (4, 3 * 16, 64), (2, 24, 8), (2, 2, 8, 24)],
                         ids=["square", "wide", "tall", "qkv-batch", "tall-batch", "4d"])
def test_torch_matches_reference(shape):
    G, seed = _random(*shape)
    err = _rel_err(ns_torch(G), newton_schulz_reference(G))
    assert err < FP32_TOL, f"seed {seed}: relative error {err:.2e}"


def test_bf16_matmuls_on_cpu_when_asked():
    """--bf16 runs ask for bf16 Newton-Schulz on CPU too: within bf16's
    tolerance of the float64 reference, not fp32's (so the matmuls really ran in bf16), in G's dtype."""
    G, seed = _random(64, 96)
    ref = newton_schulz_reference(G)
    Y = ns.newton_schulz(G, backend="torch", dtype=torch.bfloat16)
    assert Y.dtype == torch.float32 and FP32_TOL < _rel_err(Y, ref) < 5e-2, f"seed {seed}: {_rel_err(Y, ref):.2e}"
    assert _rel_err(ns.newton_schulz(G, backend="torch"), ref) < FP32_TOL  # (default on CPU: fp32)


def test_reference_is_nearly_orthogonal():
    G, seed = _random(48, 80)
    X = newton_schulz_reference(G, steps=10)
    sv = torch.linalg.svdvals(X)
    assert 0.6 < sv.min() and sv.max() < 1.3, f"seed {seed}: singular values {sv.min():.3f}..{sv.max():.3f}"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
@pytest.mark.parametrize("shape", [(24, 40), (40, 24), (3, 40, 24)])
def test_torch_keeps_dtype_and_shape(dtype, shape):
    G, _ = _random(*shape, dtype=dtype)
    Y = ns_torch(G)
    assert Y.dtype == dtype and Y.shape == G.shape


def test_auto_is_torch_on_cpu():
    assert resolve_backend("auto", torch.device("cpu")) == "torch"
    G, _ = _random(16, 24)
    assert torch.equal(newton_schulz(G, backend="auto"), ns_torch(G))


def test_unknown_backend_raises():
    with pytest.raises(ValueError, match="--ns-backend bogus: unknown Newton-Schulz backend"):
        newton_schulz(torch.randn(8, 8), backend="bogus")


def test_unavailable_backends_raise(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    for backend in ("triton", "te"):  # neither runs on a plain CPU here
        why = ns.unavailable_reason(backend, torch.device("cpu"))
        assert why, backend
        with pytest.raises(ValueError, match=f"--ns-backend {backend}: "):
            newton_schulz(torch.randn(8, 8), backend=backend)


# --- triton backend (interpreter) --------------------------------------------------------------
@pytest.fixture
def triton_cpu(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    from megatron_grow.optim import ns_triton

    why = ns_triton.unavailable_reason(torch.device("cpu"))
    if why:
        pytest.skip(why)
    return ns_triton


@pytest.mark.parametrize("shape", [(32, 48), (48, 32), (3, 16, 40)], ids=["wide", "tall", "batch"])
def test_triton_matches_reference(triton_cpu, shape):
    G, seed = _random(*shape)
    Y = triton_cpu.ns_triton(G, block=16)  # 16-wide tiles: several tiles, ragged edges
    assert Y.dtype == G.dtype and Y.shape == G.shape
    err = _rel_err(Y, newton_schulz_reference(G))
    assert err < FP32_TOL, f"seed {seed}: relative error {err:.2e}"


def test_triton_through_dispatch_keeps_dtype(triton_cpu):
    G, seed = _random(12, 20, dtype=torch.bfloat16)
    Y = newton_schulz(G, backend="triton")
    assert Y.dtype == torch.bfloat16 and Y.shape == G.shape
    assert _rel_err(Y.float(), newton_schulz_reference(G)) < 1e-2, f"seed {seed}"


def test_sym_gram_computes_only_upper_tiles(triton_cpu):
    X, seed = _random(2, 40, 24)  # 40 rows, 16-wide tiles: T = 3, the last one ragged
    T = 3
    tiles = torch.zeros(2, T, T, dtype=torch.int32)
    out = torch.full((2, 40, 40), float("nan"))
    triton_cpu.sym_gram(X, out=out, block=16, tiles=tiles)
    # one program per upper tile (T(T+1)/2 of them per matrix), none below the diagonal ...
    assert torch.equal(tiles, torch.ones(T, T, dtype=torch.int32).triu().expand(2, T, T)), tiles
    # ... and the mirrored stores fill in the rest: the full product, no NaN left
    torch.testing.assert_close(out, X @ X.mT, rtol=1e-5, atol=1e-5, msg=lambda m: f"seed {seed}: {m}")


def test_sym_gram_epilogue_and_mm_add(triton_cpu):
    """Against float64 products, by relative Frobenius error: the entries of B X reach ~1e4 here, so
    an absolute tolerance would only measure fp32's rounding of large numbers."""
    X, seed = _random(40, 24)
    C = X @ X.T  # symmetric, like A
    C64, X64 = C.double(), X.double()
    B = triton_cpu.sym_gram(C, C=C, alpha=2.0315, beta=-4.775, block=16)  # b A + c A A
    err = _rel_err(B, -4.775 * C64 + 2.0315 * C64 @ C64)
    assert err < 1e-6, f"seed {seed}: sym_gram epilogue relative error {err:.2e}"
    Y = triton_cpu.mm_add(B, X, 3.4445, block=16)
    err = _rel_err(Y, 3.4445 * X64 + B.double() @ X64)
    assert err < 1e-6, f"seed {seed}: mm_add relative error {err:.2e}"


# --- Transformer Engine backend ---------------------------------------------------------------------
def test_te_matches_reference():
    from megatron_grow.optim import ns_te

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    why = ns_te.unavailable_reason(device)
    if why:
        pytest.skip(why)
    G, seed = _random(256, 512)
    Y = ns_te.ns_te(G.to(device)).cpu()
    err = _rel_err(Y, newton_schulz_reference(G))
    assert err < 5e-2, f"seed {seed}: relative error {err:.2e} (bf16)"
