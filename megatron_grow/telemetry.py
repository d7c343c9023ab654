"""GPU telemetry for the metrics stream: each rank's GPU memory, utilisation, power and temperature,
gathered to rank 0 at every log interval, and the run's MFU. Nothing on CPU.

Memory comes from CUDA: used = total - free, the whole device's; peak = the most this process's
tensors have held at once (torch.cuda.max_memory_allocated since the start: no CUDA context, NCCL
buffers or allocator cache, which is what megatron_grow/memory.py estimates). Utilisation, power and
temperature from NVML through torch.cuda (nvidia-ml-py, the gpu extra), which maps the CUDA device to
its NVML index under CUDA_VISIBLE_DEVICES. A field NVML cannot give is NaN, logged as null.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

from megatron_grow import flops

FIELDS = ("gpu_mem_used_gib", "gpu_mem_total_gib", "gpu_mem_peak_gib", "gpu_util_pct", "gpu_power_w", "gpu_temp_c")


def _nvml(read) -> float:
    try:
        return float(read())
    except Exception:  # no nvidia-ml-py, or a field this GPU does not report
        return math.nan


class GpuTelemetry:
    def __init__(self, device: torch.device, bf16: bool):
        self.active = device.type == "cuda"
        if not self.active:
            return
        self.device = device
        precision = "bf16" if bf16 else ("tf32" if torch.backends.cuda.matmul.allow_tf32 else "fp32")
        self.peak = flops.peak_flops(torch.cuda.get_device_name(device), precision)

    def local(self) -> list[float]:
        free, total = torch.cuda.mem_get_info(self.device)
        d = self.device
        return [(total - free) / 2**30, total / 2**30, torch.cuda.max_memory_allocated(d) / 2**30,
                _nvml(lambda: torch.cuda.utilization(d)), _nvml(lambda: torch.cuda.power_draw(d) / 1000),
                _nvml(lambda: torch.cuda.temperature(d))]

    def record(self, flops_per_iter: float, seconds: float) -> dict:
        """Every rank calls this at the same iterations (a collective); the fields: per-rank lists, and
        ``mfu`` when the GPU's peak is known. An empty dict on CPU."""
        if not self.active:
            return {}
        mine = torch.tensor(self.local(), dtype=torch.float64, device=self.device)
        every = torch.empty(dist.get_world_size(), len(FIELDS), dtype=torch.float64, device=self.device)
        dist.all_gather_into_tensor(every, mine)
        out = {name: [round(v, 2) for v in col] for name, col in zip(FIELDS, every.t().tolist(), strict=True)}
        if self.peak:
            out["mfu"] = flops.mfu(flops_per_iter, seconds, dist.get_world_size(), self.peak)
        return out
