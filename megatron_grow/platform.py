"""Process-group bring-up for CUDA+NCCL or CPU+gloo.

This is the ONLY module that knows megatron-core assumes CUDA. On a CPU-only machine
`activate_cpu_compat()` installs a small, explicit compatibility layer:

* ``torch.cuda.current_device()`` returns the CPU device, so megatron's
  ``torch.empty(..., device=torch.cuda.current_device())`` allocates on CPU;
* factory calls that name ``device="cuda"`` (or a CUDA index) are redirected to CPU by a
  ``TorchFunctionMode`` (only the ``device`` argument is rewritten, nothing else);
* ``Tensor.cuda()`` returns the tensor unchanged and ``torch.cuda.synchronize`` does nothing;
* ``torch.cuda.Stream/Event/stream/current_stream`` become inert stand-ins (there is one
  stream on CPU, so waiting and recording are genuinely no-ops);
* megatron's CUDA RNG tracker is replaced by one that forks the CPU generator, and activation
  recomputation's save / restore of the CUDA generator's state (beside the CPU one) does nothing;
* ``dist.all_to_all_single`` takes its split sizes as lists: the MoE alltoall token dispatcher
  passes tensors / numpy arrays, which gloo rejects (the values are unchanged);
* ``dist.all_gather`` into tensors of unequal first dimensions (the MoE allgather path under
  sequence parallelism) pads to the largest, gathers, and copies each slice back: gloo needs
  equal sizes.

Nothing else is patched: the numerics are megatron-core's own, run on CPU tensors.

Transformer Engine's absence (a model matter, not a device one) is handled where models are built:
``megatron_without_te()`` in megatron_grow/models/layers.py.
"""

from __future__ import annotations

import contextlib
import datetime
import os

import torch
import torch.distributed as dist
from torch.overrides import TorchFunctionMode

from megatron_grow.config import ConfigError, RunConfig

_CPU_COMPAT_ACTIVE = False


def resolve_device(device: str) -> str:
    """Map ``--device auto|cpu|cuda`` to 'cpu' or 'cuda' (auto picks CUDA when usable)."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(["--device cuda: no CUDA device is visible to torch; use --device cpu or auto"])
    return device


class _CudaToCpu(TorchFunctionMode):
    """Rewrites the ``device`` keyword of tensor factories from CUDA to CPU."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        dev = kwargs.get("device")
        if dev is not None and _is_cuda(dev):
            kwargs = dict(kwargs, device="cpu")
        return func(*args, **kwargs)


def _is_cuda(dev) -> bool:
    if isinstance(dev, int):
        return True
    if isinstance(dev, str):
        return dev.startswith("cuda")
    return isinstance(dev, torch.device) and dev.type == "cuda"


class _InertStream:
    """Stand-in for torch.cuda.Stream / Event on CPU: one stream, nothing to wait for."""

    def __init__(self, *args, **kwargs):
        pass

    def __getattr__(self, name):  # wait_stream, record, synchronize, ...: nothing to do
        return lambda *a, **k: None

    def record_event(self, *a, **k):
        return _InertStream()

    def __eq__(self, other):  # there is one stream
        return isinstance(other, _InertStream)

    def __hash__(self):
        return 0

    def query(self):
        return True

    def elapsed_time(self, other):
        return 0.0


def _cpu_rng_tracker_class():
    from megatron.core.tensor_parallel import random as mrandom

    class CpuRNGStatesTracker(mrandom.CudaRNGStatesTracker):
        """megatron's named RNG states, kept for the CPU generator."""

        def add(self, name, seed):
            if seed in self.seeds_:
                raise Exception(f"seed {seed} already exists")
            self.seeds_.add(seed)
            if name in self.states_:
                raise Exception(f"rng state {name} already exists")
            self.states_[name] = torch.Generator().manual_seed(seed).get_state()

        @contextlib.contextmanager
        def fork(self, name=mrandom._MODEL_PARALLEL_RNG_TRACKER_NAME):
            if name not in self.states_:
                raise Exception(f"rng state {name} is not added")
            orig = torch.get_rng_state()
            torch.set_rng_state(self.states_[name])
            try:
                yield
            finally:
                self.states_[name] = torch.get_rng_state()
                torch.set_rng_state(orig)

    return CpuRNGStatesTracker


def activate_cpu_compat() -> None:
    """Install the CPU compatibility layer described in the module docstring (idempotent)."""
    global _CPU_COMPAT_ACTIVE
    if _CPU_COMPAT_ACTIVE:
        return
    cpu = torch.device("cpu")
    torch.cuda.current_device = lambda: cpu
    torch.cuda.synchronize = lambda *a, **k: None
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.cuda.Stream = _InertStream
    torch.cuda.Event = _InertStream
    torch.cuda.current_stream = lambda *a, **k: _InertStream()
    torch.cuda.default_stream = lambda *a, **k: _InertStream()
    torch.cuda.stream = lambda *a, **k: contextlib.nullcontext()
    torch.cuda.set_device = lambda *a, **k: None
    _CudaToCpu().__enter__()

    all_to_all_single = dist.all_to_all_single

    def all_to_all_single_lists(output, input, output_split_sizes=None, input_split_sizes=None, **kw):
        as_list = lambda s: None if s is None else [int(x) for x in s]  # noqa: E731
        return all_to_all_single(output, input, as_list(output_split_sizes), as_list(input_split_sizes), **kw)

    dist.all_to_all_single = all_to_all_single_lists
    all_gather = dist.all_gather

    def all_gather_uneven(tensor_list, tensor, group=None, async_op=False):
        if all(t.shape == tensor.shape for t in tensor_list):
            return all_gather(tensor_list, tensor, group=group, async_op=async_op)
        rows = max(t.shape[0] for t in tensor_list)
        padded = tensor.new_zeros((rows, *tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        bufs = [torch.empty_like(padded) for _ in tensor_list]
        all_gather(bufs, padded, group=group)
        for out, buf in zip(tensor_list, bufs, strict=True):
            out.copy_(buf[: out.shape[0]])

    dist.all_gather = all_gather_uneven

    from megatron.core.tensor_parallel import random as mrandom

    mrandom._CUDA_RNG_STATE_TRACKER = _cpu_rng_tracker_class()()
    # activation recomputation saves and restores the CUDA generator beside the CPU one: there is none
    mrandom._get_cuda_rng_state = lambda *a, **k: None
    mrandom._set_cuda_rng_state = lambda *a, **k: None
    mrandom._CUDA_RNG_STATE_TRACKER_INITIALIZED = True
    _CPU_COMPAT_ACTIVE = True


def device_problems(cfg: RunConfig, device: str, te_available: bool) -> list[str]:
    P = []
    if cfg.device == "cpu" or device == "cpu":
        if cfg.transformer_impl == "transformer_engine":
            P.append("--transformer-impl transformer_engine needs a GPU; use --transformer-impl local on CPU")
    if cfg.transformer_impl == "transformer_engine" and not te_available and device == "cuda":
        P.append("--transformer-impl transformer_engine: Transformer Engine is not importable; "
                 "pip install -e .[gpu] or use --transformer-impl local")
    return P


def te_available() -> bool:
    """Transformer Engine imports (a half-installed one raises more than ImportError)."""
    try:
        import transformer_engine  # noqa: F401
    except Exception:
        return False
    return True


_TIMEOUT_MINUTES = [10]  # the collective timeout of init_distributed, for every group made later


def init_distributed(device: str, timeout_minutes: float = 10) -> tuple[int, int, torch.device]:
    """Start torch.distributed (env:// from torchrun, or a single local process); a collective that
    waits more than ``timeout_minutes`` fails (--distributed-timeout-minutes).

    Returns (rank, world_size, torch device). On CPU the backend is gloo and the compatibility
    layer is activated first; on CUDA the backend is NCCL and each rank binds LOCAL_RANK's GPU.
    """
    if device == "cpu":
        activate_cpu_compat()
    if "RANK" not in os.environ:  # plain `python -m ...`: a world of one
        os.environ.setdefault("RANK", "0")
        os.environ.setdefault("WORLD_SIZE", "1")
        os.environ.setdefault("LOCAL_RANK", "0")
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    _TIMEOUT_MINUTES[0] = timeout_minutes
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if device == "cuda" else "gloo",
            timeout=datetime.timedelta(minutes=timeout_minutes),
        )
    dev = torch.device("cuda", torch.cuda.current_device()) if device == "cuda" else torch.device("cpu")
    return dist.get_rank(), dist.get_world_size(), dev


def collective_device() -> torch.device:
    """Where a tensor must live for the default group's collectives: this rank's GPU under NCCL,
    the CPU under gloo."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_model_parallel(tp: int, pp: int, seed: int, ep: int = 1) -> None:
    """(Re)create megatron's parallel groups for a TP x PP layout (DP = the rest; experts split EP
    ways over the DP ranks, expert TP = TP) and seed RNGs."""
    from megatron.core import parallel_state as ps

    if ps.model_parallel_is_initialized():
        ps.destroy_model_parallel()
    ps.initialize_model_parallel(
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp,
        expert_model_parallel_size=ep,
        create_gloo_process_groups=dist.get_backend() != "gloo",
        distributed_timeout_minutes=_TIMEOUT_MINUTES[0],
    )
    seed_rngs(seed)


def seed_rngs(seed: int) -> None:
    """Seed torch's RNG and megatron's model-parallel RNG tracker (after the parallel groups exist)."""
    from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed

    torch.manual_seed(seed)  # every rank: weights that must match across TP ranks then do
    model_parallel_cuda_manual_seed(seed)


def shutdown() -> None:
    from megatron.core import parallel_state as ps

    if ps.model_parallel_is_initialized():
        ps.destroy_model_parallel()
    if dist.is_initialized():
        dist.destroy_process_group()
