"""Every CUDA kernel compiles for a real device (PTX for sm_90), with no local memory and no float64 arithmetic.

The simulator never compiles the kernels, so this is the check that they are valid numba-cuda code with the
argument types the backend uses. It runs in a fresh process (this one runs numba.cuda in simulator mode) and
needs NVVM and NVRTC, which the test extra installs (nvidia-nvvm, nvidia-cuda-nvrtc); skipped without them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest


def _have(dist: str) -> bool:
    try:
        version(dist)
    except PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(not (_have("nvidia-nvvm") and _have("nvidia-cuda-nvrtc")),
                    reason="NVVM/NVRTC not installed (pip install nvidia-nvvm nvidia-cuda-nvrtc, or the test extra)")
def test_every_kernel_compiles_to_ptx_without_local_memory_or_float64():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    run = subprocess.run([sys.executable, "-m", "tests.cuda.ptx_check"], capture_output=True, text=True, env=env,
                         cwd=Path(__file__).parents[2], timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report.pop("unlisted") == []  # every kernel of streamsent.kernels.cuda is compiled here
    assert sum(k.startswith("recurrent/") for k in report) == 3 * 3  # each cell kind × R
    failed = {k: v["error"][:2000] for k, v in report.items() if "error" in v}
    assert not failed, failed
    assert {k: v for k, v in report.items() if v["local_bytes"] or v["f64"]} == {}
