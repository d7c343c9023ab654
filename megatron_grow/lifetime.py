"""Tying a process's life to the process that started it (Linux). Standard library only: a
multiprocessing helper that imports this module must start in a fraction of a second, not pay for
torch and megatron."""

from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1

# The signals that ask a run to stop after saving (training.StopRequests). SIGHUP: the terminal closed
# or, for torchrun's workers, torchrun died (the kernel sends it to each worker thread, so repeats of
# it are one request, never the "second signal" that ends waiting)
STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1", "SIGHUP")


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Have the kernel send ``sig`` to this process when its parent dies; False where that cannot be
    arranged (not Linux) or the parent is already gone."""
    if os.uname().sysname != "Linux":
        return False
    parent = os.getppid()
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, int(sig))
    return os.getppid() == parent  # (it died before the call: nobody will send the signal)


def kill_helper_with_parent() -> None:
    """The initializer of a multiprocessing helper we start: it lives exactly as long as its parent.
    It ignores the signals that ask the run to stop: Slurm signals every process of a job step, and a
    helper killed by them (the checkpoint writer's queue) would fail the save the stop is for."""
    die_with_parent(signal.SIGKILL)
    for s in STOP_SIGNALS:
        signal.signal(getattr(signal, s), signal.SIG_IGN)
