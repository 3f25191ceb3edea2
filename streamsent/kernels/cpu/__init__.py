"""Numba CPU kernels: pure functions over flat float32 arrays, no Python objects, nogil, cached on disk.

`FASTMATH` is the one place that sets which floating-point liberties the kernels take. It allows
reassociation and FMA contraction (so loops vectorise) but not `nnan`/`ninf`: max pooling starts from -inf.
Every kernel also uses `error_model="numpy"`: Python's ZeroDivisionError check on float division is a branch
that stops LLVM from vectorising any loop that divides (tanh's rational form does).
"""

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
