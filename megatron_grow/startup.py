"""Process start-up time. Standard library only: megatron_grow/__init__.py installs this in every process,
including the checkpoint writer's helper, which must not import torch.

megatron.core.jit sets ``jit_fuser = torch.compile``, and some 15 megatron modules decorate functions
with it while they are imported. Decorating is what imports torch's dynamo and inductor (about 4 s of
the 10 s that importing megatron.core takes on our CPUs), although compiling waits for a first call
anyway and most of those functions are never called here. So when megatron.core.jit is imported, its
``jit_fuser`` is replaced by a decorator that calls torch.compile at the function's first call, with the
same arguments: what runs, and when it compiles, are as before.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import sys


def compile_at_first_call(compile):
    """A decorator like ``compile`` (torch.compile) that applies it at the first call."""

    def decorator(fn=None, **options):
        if fn is None:  # @jit_fuser(options)
            return lambda f: decorator(f, **options)
        compiled = None

        @functools.wraps(fn)
        def call(*args, **kwargs):
            nonlocal compiled
            if compiled is None:
                compiled = compile(fn, **options)
            return compiled(*args, **kwargs)

        return call

    return decorator


class _LazyJitFuser(importlib.abc.MetaPathFinder):
    NAME = "megatron.core.jit"

    def find_spec(self, name, path, target=None):
        if name != self.NAME:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            torch = sys.modules["torch"]
            if module.jit_fuser is torch.compile:
                module.jit_fuser = compile_at_first_call(torch.compile)

        spec.loader.exec_module = exec_module
        return spec


def install() -> None:
    if "megatron.core.jit" not in sys.modules and not any(isinstance(f, _LazyJitFuser) for f in sys.meta_path):
        sys.meta_path.insert(0, _LazyJitFuser())
