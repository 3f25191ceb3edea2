"""Compute kernels: `cpu/` holds Numba `@njit` kernels over flat arrays; `cuda/` mirrors them module for module."""
