"""Compile every CUDA kernel to PTX for sm_90 with the argument types the backend launches it with, no GPU needed.

Run as a script in a process without the simulator (`python -m tests.cuda.ptx_check`): the simulator runs the
kernels as Python and never compiles them, so a construct the CUDA target rejects (a local array whose size is
not a compile-time constant, say) shows only here. Prints one JSON object: per kernel, the error or the PTX's
local-memory bytes and float64 instructions (both should be zero: the partial sums stay in registers, the
arithmetic in float32). Needs numba-cuda's NVVM and NVRTC (the test extra installs them).
"""

from __future__ import annotations

import json
import re
import sys


def signatures() -> dict:
    from numba.core.types import Array, float32, int32, int64

    from streamsent.kernels.cuda import conv, linear, memory, pooling, recurrent

    f1, f2 = Array(float32, 1, "C"), Array(float32, 2, "C")
    i32, i64 = Array(int32, 1, "C"), Array(int64, 1, "C")
    jobs = {  # the types backends/cuda.py passes: token ids and aranges int32, staged index arrays int64
        "linear": (linear.linear, (f2, i32, f2, f1, f2)),
        "softmax_linear": (linear.softmax_linear, (f2, f2, f1, f2)),
        "cnn_max_over_time": (conv.cnn_max_over_time, (f2, i32, i64, i64, i64, f1, int64, f2)),
        "pool_segments/positions": (pooling.pool_segments, (int64, f2, i32, i64, i64, f1, f1, f1, f2, f2, f1, i32,
                                                             int64)),
        "pool_segments/slots": (pooling.pool_segments, (int64, f2, i32, i64, i64, f1, f1, f1, f2, f2, f1, i64, int64)),
        "attention_scores_linear": (pooling.attention_scores_linear, (f2, f2, f1, f1, f1)),
        "scatter_cols/arange": (memory.scatter_cols, (f2, i32, int64, f2)),
        "scatter_cols/staged": (memory.scatter_cols, (f2, i64, int64, f2)),
        "add_lengths": (memory.add_lengths, (f1, i64)),
        "fill": (memory.fill, (f1, float32)),
    }
    rec = (f2, i32, i64, i64, i64, int64, f2, f1, f2, f2, int64, f2, int64, int64, f2, f2)
    for name, kind in recurrent.KINDS.items():
        for R in (1, 2, 4):
            jobs[f"recurrent/{name}/R{R}"] = (recurrent._make(kind, R), rec)
    return jobs


def unlisted(jobs: dict) -> list[str]:
    """Kernels defined in streamsent.kernels.cuda that `signatures` does not compile (it must list every one)."""
    from streamsent.kernels.cuda import activations, conv, linear, memory, pooling, recurrent

    listed = {id(k) for k, _ in jobs.values()}
    return sorted(f"{mod.__name__}.{name}" for mod in (activations, conv, linear, memory, pooling, recurrent)
                  for name, obj in vars(mod).items()
                  if type(obj).__name__ == "CUDADispatcher" and not getattr(obj, "targetoptions", {}).get("device")
                  and id(obj) not in listed)


def main() -> int:
    from numba import cuda

    jobs = signatures()
    out: dict = {"unlisted": unlisted(jobs)}
    for name, (kern, sig) in jobs.items():
        try:
            ptx, _ = cuda.compile_ptx(kern.py_func, sig, cc=(9, 0))
        except Exception as exc:  # noqa: BLE001 - reported, the test fails on it
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        local = sum(int(n) for n in re.findall(r"\.local\s+\.align\s+\d+\s+\.b8\s+\S+\[(\d+)\]", ptx))
        out[name] = {"local_bytes": local, "f64": len(re.findall(r"\.f64\b", ptx))}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
