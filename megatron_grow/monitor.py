"""Metrics stream (JSONL), optional TensorBoard, and the console progress bar. Rank 0 only."""

from __future__ import annotations

import json
import math
import os
import sys


def strict(record: dict) -> dict:
    """Non-finite floats as null: every metrics line stays strict JSON (a NaN loss is logged, not hidden)."""
    def finite(v):
        if isinstance(v, list):
            return [finite(x) for x in v]
        return None if isinstance(v, float) and not math.isfinite(v) else v

    return {k: finite(v) for k, v in record.items()}


class Monitor:
    def __init__(self, cfg, rank: int, start_iter: int):
        self.active = rank == 0
        self.file = self.tb = self.bar = None
        if not self.active:
            return
        if cfg.metrics_file:
            os.makedirs(os.path.dirname(os.path.abspath(cfg.metrics_file)), exist_ok=True)
            self.file = open(cfg.metrics_file, "a")
        if cfg.tensorboard_dir:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(cfg.tensorboard_dir)
        if cfg.progress:
            from tqdm import tqdm

            self.bar = tqdm(total=cfg.train_iters, initial=start_iter, unit="it", file=sys.stderr,
                            dynamic_ncols=True, mininterval=1.0)

    def log(self, record: dict) -> None:
        if not self.active:
            return
        record = strict(record)
        if self.file:
            self.file.write(json.dumps(record, allow_nan=False) + "\n")
            self.file.flush()
        if self.tb:
            for k, v in record.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "iter":
                    self.tb.add_scalar(k, v, record["iter"])
        if record.get("lm_loss") is not None and self.bar is not None:
            gpu = {}
            if record.get("gpu_mem_used_gib"):
                gpu["mem_gib"] = f"{max(record['gpu_mem_used_gib']):.1f}/{max(record['gpu_mem_total_gib']):.0f}"
            if record.get("mfu") is not None:
                gpu["mfu"] = f"{record['mfu']:.1%}"
            self.bar.set_postfix(loss=f"{record['lm_loss']:.4f}", tok_s=f"{record['tokens_per_s']:.0f}", **gpu,
                                 refresh=False)

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def print(self, msg: str) -> None:
        if not self.active:
            return
        if self.bar is not None:
            self.bar.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.file:
            self.file.close()
        if self.tb:
            self.tb.close()
