"""The CUDA tests run the kernels in numba-cuda's simulator, or on a real GPU with STREAMSENT_CUDA_TESTS=device.

The simulator is chosen by NUMBA_ENABLE_CUDASIM=1 when numba.cuda is first imported, and stays for the process.
So the variable is set by a package fixture, before the first test here imports the CUDA backend (no module of
this package imports it at collection time), and removed again after the last one: the tests outside this
folder, which never import numba.cuda (the CPU path does not), see the environment they always saw, and
`device = "cuda"`/`"auto"` there behave as on a machine without a GPU (models.model.cuda_problem).

The simulator runs each CUDA thread as a Python thread and polls them from the launching thread, so the
interpreter's switch interval (5 ms) dominates its run time; 0.1 ms makes it ~4x faster. It is restored after.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator

import numba.core.config
import pytest

ON_DEVICE = os.environ.get("STREAMSENT_CUDA_TESTS") == "device"
# Launch geometry of the backends under test: under the simulator blocks of a few threads, so that every
# kernel runs several blocks and each recurrence thread owns several hidden units of two sequences; on a GPU the
# defaults.
SIM_GEOMETRY = {"threads": 8, "rnn_block": (2, 2, 2)}


@pytest.fixture(scope="package", autouse=True)
def cuda_target() -> Iterator[str]:
    if importlib.util.find_spec("numba_cuda") is None:
        pytest.skip("numba-cuda is not installed (pip install -e '.[cuda]')")
    saved_env, saved_interval = os.environ.get("NUMBA_ENABLE_CUDASIM"), sys.getswitchinterval()
    if not ON_DEVICE:
        if "numba.cuda" in sys.modules and "simulator" not in sys.modules["numba.cuda"].to_device.__module__:
            pytest.fail("numba.cuda was imported (not in simulator mode) before the CUDA tests ran; run tests/cuda "
                        "in a pytest process of its own, or set NUMBA_ENABLE_CUDASIM=1")
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
        sys.setswitchinterval(1e-4)
    from streamsent.kernels.cuda.compiler import is_simulator

    assert is_simulator() != ON_DEVICE
    try:
        yield "device" if ON_DEVICE else "simulator"
    finally:
        sys.setswitchinterval(saved_interval)
        if saved_env is None:
            os.environ.pop("NUMBA_ENABLE_CUDASIM", None)
        else:
            os.environ["NUMBA_ENABLE_CUDASIM"] = saved_env
        numba.core.config.reload_config()  # numba's config as the other tests had it (ENABLE_CUDASIM off)


@pytest.fixture
def geometry() -> dict:
    """Backend options for the launch geometry (see SIM_GEOMETRY)."""
    return {} if ON_DEVICE else dict(SIM_GEOMETRY)
