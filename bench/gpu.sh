#!/usr/bin/env bash
# The CUDA target on a machine with an NVIDIA GPU, in one go (docs/cuda.md):
#   1. environment: a probe kernel, GPU, driver, Python packages (to env.txt)
#   2. parity on the device: tests/cuda with STREAMSENT_CUDA_TESTS=device (to parity.txt)
#   3. the benchmark: streamsent CUDA vs torch CUDA/cuDNN, LSTM/GRU/CNN/HAN at batch 32/256/4096 (gpu-bench.md)
# Usage: bench/gpu.sh [OUTDIR]      (default $OUT, else /tmp/streamsent-gpu)
#        bench/gpu.sh --sim [OUTDIR] (numba-cuda's simulator, tiny shapes: checks the script end to end)
# Installs nothing from the network. It uses the machine's python3 (torch, numba, numba-cuda) with this checkout
# on PYTHONPATH; wheels found in .wheels/ (filled beforehand, see docs/cuda.md) are installed first, offline.
# At most about 8.5 minutes: the tests get 200 s, the benchmark 300 s (it starts no new row after 270 s).
set -uo pipefail
cd "$(dirname "$0")/.."
SIM=0
if [ "${1:-}" = "--sim" ]; then SIM=1; shift; fi
DEST=${1:-${OUT:-/tmp/streamsent-gpu}}
mkdir -p "$DEST"
: > "$DEST/env.txt"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# NVVM and the runtime: numba-cuda looks in the pip wheels, then CUDA_HOME; a system toolkit is the fallback.
if [ -z "${CUDA_HOME:-}" ] && [ -d /usr/local/cuda ]; then export CUDA_HOME=/usr/local/cuda; fi
probe() {  # numba-cuda imports, compiles a kernel, runs it on the device and gets the right answer back
  timeout 120 "$PY" - "$SIM" <<'PYEOF'
import importlib.metadata as md, sys
import numpy as np
if sys.argv[1] == "1":
    import os; os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
from numba import cuda
@cuda.jit
def twice(a):
    i = cuda.grid(1)
    if i < a.size:
        a[i] = 2.0 * i
d = cuda.device_array(1000, dtype=np.float32)
twice[8, 128](d)
assert np.array_equal(d.copy_to_host(), 2.0 * np.arange(1000, dtype=np.float32)), "wrong result"
dev = cuda.get_current_device()
print("probe ok: numba-cuda", md.version("numba-cuda"), "numba", md.version("numba"),
      "on", getattr(dev, "name", "simulator"), "cc", getattr(dev, "compute_capability", None))
PYEOF
}
# Carried wheels (.wheels/, see docs/cuda.md) first, since they are the versions CI tests; the image's own
# packages if they fail the probe.
if ls .wheels/*.whl >/dev/null 2>&1; then
  echo "installing the carried wheels in .wheels/ (offline)"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/streamsent-site \
    .wheels/*.whl && export PYTHONPATH=/tmp/streamsent-site${PYTHONPATH:+:$PYTHONPATH}
  if ! probe 2>&1 | tee -a "$DEST/env.txt"; then
    echo "the carried wheels failed the probe: falling back to the image's packages"
    export PYTHONPATH=${PYTHONPATH#/tmp/streamsent-site}; PYTHONPATH=${PYTHONPATH#:}
    probe 2>&1 | tee -a "$DEST/env.txt" || echo "the image's packages failed the probe too (the tests below will say how)"
  fi
else
  probe 2>&1 | tee -a "$DEST/env.txt" || echo "numba-cuda failed the probe (the tests below will say how)"
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

{
  date -u
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  "$PY" - <<'PYEOF'
import importlib.metadata as md, sys
print("python", sys.version.split()[0], sys.executable)
for d in ("numpy", "numba", "llvmlite", "numba-cuda", "cuda-bindings", "torch", "pyarrow", "safetensors", "pytest"):
    try:
        print(d, md.version(d))
    except md.PackageNotFoundError:
        print(d, "MISSING")
PYEOF
} 2>&1 | tee -a "$DEST/env.txt"

if [ "$SIM" = 1 ]; then
  MODE=(env NUMBA_ENABLE_CUDASIM=1)
  BENCH=(--sim)
else
  MODE=(env STREAMSENT_CUDA_TESTS=device)
  BENCH=()
fi

echo "== parity: tests/cuda on the $([ "$SIM" = 1 ] && echo simulator || echo device)"
timeout 200 "${MODE[@]}" "$PY" -m pytest -q -p no:cacheprovider tests/cuda 2>&1 | tee "$DEST/parity.txt"
parity=${PIPESTATUS[0]}

echo "== benchmark"
timeout 300 "$PY" bench/gpu.py "${BENCH[@]}" --out "$DEST/gpu-bench.md" 2>&1 | tee "$DEST/bench.log"
bench=${PIPESTATUS[0]}

echo "== parity exit $parity, benchmark exit $bench; results in $DEST"
[ "$parity" = 0 ] && [ "$bench" = 0 ]
