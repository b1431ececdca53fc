#!/usr/bin/env bash
# Device-machine wrapper (not in the repo): Python 3.12 packages the image lacks, then gpu_check.
set -uo pipefail
t0=$(date +%s)
mkdir -p /tmp/site && tar xJf .whl/site312.tar.xz -C /tmp/site || exit 3
PY=$(command -v python3)
mkdir -p /tmp/bin && printf '#!/bin/sh\nexec %s "$@"\n' "$PY" > /tmp/bin/python && chmod +x /tmp/bin/python
export PATH=/tmp/bin:$PATH PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 RAY_AUTH_MODE=disabled
mkdir -p ../shared/peers && cp .whl/peers/* ../shared/peers/
echo "setup $(( $(date +%s) - t0 )) s; python3 is $PY"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
echo "c++: $(command -v g++ c++ | head -1); cores $(nproc)"
python -c "import sys, torch, ray, gymnasium, mujoco, drive_rllib; print(sys.version.split()[0], 'torch', torch.__version__, 'ray', ray.__version__, 'mujoco', mujoco.__version__); e = gymnasium.make('HalfCheetah-v5'); e.reset(seed=0); print('env ok')" || exit 4
GPU_CHECK_OUT=$OUT GPU_CHECK_CUDAGRAPHS=1 bash benchmarks/gpu_check.sh 2>&1 | tee $OUT/gpu_check.log
echo "gpu_check exit ${PIPESTATUS[0]}; total $(( $(date +%s) - t0 )) s"
