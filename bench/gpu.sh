#!/usr/bin/env bash
# The CUDA target on a machine with an NVIDIA GPU, in one go (docs/cuda.md):
#   1. environment: GPU, driver, Python packages (to env.txt)
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
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
if ls .wheels/*.whl >/dev/null 2>&1; then
  echo "installing the carried wheels in .wheels/ (offline)"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/streamsent-site \
    .wheels/*.whl || exit 1
  export PYTHONPATH=/tmp/streamsent-site${PYTHONPATH:+:$PYTHONPATH}
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
} 2>&1 | tee "$DEST/env.txt"

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
