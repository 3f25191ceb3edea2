"""The one module that knows which CUDA compiler streamsent uses: numba-cuda today.

Every CUDA kernel module imports `cuda`, `kernel`, `device` and the scalar types from here, never numba-cuda
directly, so swapping the compiler (NVIDIA moved new work to numba-cuda-mlir, which keeps the `numba.cuda`
programming model) is a change to this file. Importing it imports numba.cuda: only the CUDA backend does.

`NUMBA_ENABLE_CUDASIM=1` set before this import runs every kernel in numba-cuda's simulator (pure Python,
one thread per CUDA thread): that is how the tests check the kernels on machines without a GPU.
"""

from __future__ import annotations

import warnings

import numba
import numba.core.config

# numba read the NUMBA_* variables when it was imported (the CPU kernels import it first); read them again so
# that a NUMBA_ENABLE_CUDASIM=1 set since then (tests/cuda/conftest.py does) picks the simulator below.
numba.core.config.reload_config()
from numba import cuda  # noqa: E402
from numba.core.errors import NumbaPerformanceWarning  # noqa: E402

# A batch of a few documents launches grids of a few blocks on purpose; numba-cuda would warn at every launch.
warnings.filterwarnings("ignore", message="Grid size", category=NumbaPerformanceWarning)

__all__ = ["cuda", "kernel", "device", "f32", "is_simulator", "NAME"]

NAME = "numba-cuda"
f32 = numba.float32  # a numba type: shared/local array dtypes must be numba types (the simulator insists)


def kernel(fn):
    """A `@cuda.jit` kernel, compiled lazily on first launch for the argument types it gets."""
    return cuda.jit(fn)


def device(fn):
    """A device function, inlined at numba's IR level into each kernel that calls it (no separate compile and link
    of the callee, which also lets `compile_ptx` build the kernels without a GPU)."""
    return cuda.jit(device=True, inline="always")(fn)


def is_simulator() -> bool:
    """Whether this process runs the kernels in numba-cuda's simulator (NUMBA_ENABLE_CUDASIM=1 at import)."""
    return "simulator" in cuda.to_device.__module__
