"""Tying a process's life to the process that started it (Linux). Standard library only: a
multiprocessing helper that imports this module must start in a fraction of a second, not pay for
torch and megatron."""

from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Have the kernel send ``sig`` to this process when its parent dies; False where that cannot be
    arranged (not Linux) or the parent is already gone."""
    if os.uname().sysname != "Linux":
        return False
    parent = os.getppid()
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, int(sig))
    return os.getppid() == parent  # (it died before the call: nobody will send the signal)


def kill_helper_with_parent() -> None:  # the initializer of a multiprocessing helper we start
    die_with_parent(signal.SIGKILL)
