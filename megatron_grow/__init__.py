"""megatron-grow: progressive depth training on megatron-core."""

from megatron_grow import startup

__version__ = "0.1.0"

startup.install()  # megatron's torch.compile decorators compile at first call, not import (startup.py)
