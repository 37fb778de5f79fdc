#!/usr/bin/env bash
# One command for a GPU or TPU machine as it comes (at most ~8 minutes):
#
#   benchmarks/accelerator_check.sh [--quick] [--no_install] [--out=accelerator_check.json]
#
# 1. installs this checkout with the right extra (`.[cuda]` when nvidia-smi sees a GPU, `.[tpu]`
#    on a Cloud TPU VM, none otherwise),
# 2. prints the devices,
# 3. runs benchmarks/accelerator_check.py: benchmarks/scale.py's train step at batch 32 and 128 in
#    float32 and bfloat16 (step and compile times, XLA's FLOP count, MFU against the device's
#    peak), the inference forward, peak memory, and a 200-step training on the synthetic data
#    whose loss must go down; everything in one JSON (--out).
#
# --quick: CPU-sized (tiny config, a few steps, no install), what CI runs so that this script
# cannot rot (tests/test_accelerator_check.py).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
install=1
args=()
for a in "$@"; do
  case "$a" in
    --quick) quick=1; install=0; args+=(--quick) ;;
    --no_install|--no-install) install=0 ;;
    --out=*) args+=("$a") ;;
    *) echo "unknown argument: $a (use --quick, --no_install, --out=FILE)" >&2; exit 2 ;;
  esac
done

if [[ $install == 1 ]]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    extra="[cuda]"
  elif [[ -e /dev/accel0 || -e /dev/vfio/0 || -n "${TPU_NAME:-}" ]]; then
    extra="[tpu]"
  else
    extra=""
  fi
  echo "installing .${extra}" >&2
  python -m pip install -q -e ".${extra}"
fi

python - <<'PY'
import jax
print(f"jax {jax.__version__}, backend {jax.default_backend()}:")
for d in jax.devices():
  print(f"  {d} ({d.device_kind})")
PY

exec python benchmarks/accelerator_check.py "${args[@]}"
