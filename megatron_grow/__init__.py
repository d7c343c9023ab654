"""megatron-grow: progressive depth training on megatron-core."""

__version__ = "0.1.0"
