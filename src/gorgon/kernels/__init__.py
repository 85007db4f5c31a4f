"""Attention and KV-cache operations. `attention` is the PyTorch reference that other backends match."""

from gorgon.kernels import host_blas
from gorgon.kernels.attention import attention, write_kv

__all__ = ["attention", "host_blas", "write_kv"]
