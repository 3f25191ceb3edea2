"""numba-cuda kernels, module for module the mirror of `kernels/cpu/`: same names, same arrays, same formulas.

Importing anything here imports numba.cuda (through `compiler`, the one module that names the compiler), so
only the CUDA backend does; `import streamsent` and the CPU path never do. Every kernel takes its launch
geometry from the caller (`backends/cuda.py`) and is correct for any block size, which the tests exploit: under the
simulator they launch blocks of a few threads so that many blocks really run.
"""
