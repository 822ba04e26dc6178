#!/usr/bin/env bash
# Issue #33's GPU measurements in one command, for a session lent a GPU machine (the `device` tool: about 15 minutes
# of device time, one command at most 10). That machine has PyTorch but not Hydra, and reaches no registry:
#   here:  make device-wheels                 (hydra-core, omegaconf, antlr4: pure-Python wheels, into .whl/)
#   there: bash benchmarks/device.sh          (carry .whl; timeout_s 590: its steps' timeouts add up to 570 s)
# It prints the device, runs a smoke test (gpu_stacked.py --quick, cnn: an incompatibility with that machine's
# torch shows in seconds, before the budgets are spent), then gpu_stacked.py (#33's table; STACKED_S seconds) and
# gpu.py (regbench's loop against a bare loop; LOOP_S seconds), each into a file under $OUT (./device-out without):
# device.txt, smoke.txt, gpu_stacked.txt, gpu.txt. QUICK=1 runs the measured steps with --quick too: a dry run on a
# CPU (PYTHON=.venv/bin/python QUICK=1 bash benchmarks/device.sh), checked by tests/core/test_device_script.py.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-device-out}
PY=${PYTHON:-python3}
STACKED_S=${STACKED_S:-240}
LOOP_S=${LOOP_S:-90}
WHEELS=${WHEELS:-.whl}
if [ -n "${QUICK:-}" ]; then QUICK=--quick; LOOP=--quick; else QUICK=; LOOP="--n-train 10000"; fi
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"

if ! "$PY" -c "import hydra, omegaconf" 2>/dev/null; then
  if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    echo "device.sh: $PY has no hydra-core and $WHEELS/ holds no wheels: run \`make device-wheels\` and carry .whl" >&2
    exit 2
  fi
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/regbench-site \
    "$WHEELS"/*.whl || exit 2
  export PYTHONPATH=/tmp/regbench-site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}  # regbench and its hydra_plugins from this checkout, uninstalled

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  "$PY" -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda',
    torch.version.cuda, '|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device')"
  echo "cpus $(nproc)"
} 2>&1 | tee "$OUT/device.txt"

timeout 120 "$PY" benchmarks/gpu_stacked.py --quick --models cnn 2>&1 | tee "$OUT/smoke.txt" || exit 1

status=0
timeout $((STACKED_S + 60)) "$PY" benchmarks/gpu_stacked.py $QUICK --sequential-runs 4 --budget-s "$STACKED_S" 2>&1 \
  | tee "$OUT/gpu_stacked.txt" || status=1
timeout $((LOOP_S + 60)) "$PY" benchmarks/gpu.py $LOOP --budget-s "$LOOP_S" 2>&1 \
  | tee "$OUT/gpu.txt" || status=1
exit $status
