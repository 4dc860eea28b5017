#!/usr/bin/env bash
# The checks that need an NVIDIA GPU, in one script (under 8 minutes on one GPU):
#   1. the CUDA-only tests (tests/test_cuda.py: bf16/fp16 autocast, channels_last, compile,
#      CUDA RNG in checkpoints and a bit-for-bit resume; plus the CUDA tests of the methods),
#   2. benchmarks/overhead.py with resnet9 on CIFAR-shaped synthetic data (trainbench's loop
#      against a hand-written one),
#   3. benchmarks/checkpoint_cost.py on the same model,
#   4. with 2 or more GPUs: the same recipe on 1 process and on N processes (one per GPU,
#      NCCL, --nproc-per-node N), its training throughput compared, and overhead.py's DDP mode;
# then a summary. On a machine without a CUDA GPU it says so and exits 0 having checked nothing.
#
#   bash benchmarks/gpu_check.sh              # PYTHON=... to pick the interpreter
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)" 2>/dev/null || echo 0)
if [ "$GPUS" -lt 1 ]; then
  echo "gpu_check: SKIPPED, nothing was checked: no CUDA GPU here (torch.cuda.is_available() is False)."
  echo "Run benchmarks/gpu_check.sh on a machine with an NVIDIA GPU and a CUDA build of torch."
  exit 0
fi

LOG=$(mktemp -d)
declare -a SUMMARY=()
step() {  # step NAME COMMAND...: run it, keep its output, record ok/FAILED and the time taken
  local name=$1; shift
  local t0=$SECONDS
  echo "== $name: $*"
  if "$@" 2>&1 | tee "$LOG/$name.log"; then
    SUMMARY+=("ok      $name ($((SECONDS - t0)) s)")
  else
    SUMMARY+=("FAILED  $name ($((SECONDS - t0)) s): see $LOG/$name.log")
  fi
}

"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, '|', \
  ', '.join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())))"

step cuda-tests "$PY" -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py \
  tests/methods/test_ema.py::test_after_step_makes_no_cuda_sync \
  tests/methods/test_compile.py::test_cuda_device_needs_no_cpu_compiler_check
step overhead-resnet9 "$PY" benchmarks/overhead.py --device cuda --model resnet9 --dataset synthetic \
  --batch-size 512 --steps 200 --rounds 3
step overhead-resnet9-bf16 "$PY" benchmarks/overhead.py --device cuda --model resnet9 --dataset synthetic \
  --batch-size 512 --steps 200 --rounds 3 --precision bf16
step checkpoint-cost "$PY" benchmarks/checkpoint_cost.py --device cuda \
  --recipe recipes/synthetic/cifar_shape_speed.yaml --steps 100 --every 20

if [ "$GPUS" -ge 2 ]; then
  OUT=$(mktemp -d)
  SETS=(--set duration=600ba --set eval.every=null --set checkpoint.curve_points=false --device cuda)
  step ddp-1-process "$PY" -m trainbench run recipes/synthetic/cifar_shape_speed.yaml "${SETS[@]}" \
    --out "$OUT/one"
  step "ddp-$GPUS-processes" "$PY" -m trainbench run recipes/synthetic/cifar_shape_speed.yaml "${SETS[@]}" \
    --out "$OUT/many" --nproc-per-node "$GPUS"
  step overhead-ddp "$PY" -m torch.distributed.run --standalone --nproc-per-node "$GPUS" \
    benchmarks/overhead.py --ddp --device cuda --model resnet9 --dataset synthetic --batch-size 512 \
    --steps 200 --rounds 3
  "$PY" - "$OUT" "$GPUS" <<'EOF' | tee "$LOG/ddp-throughput.log"
import sys
from pathlib import Path

from trainbench.results import read_points

out, n = Path(sys.argv[1]), int(sys.argv[2])
rows = {}
for name in ("one", "many"):
    found = list((out / name).glob("*/seed*/points.csv"))
    rows[name] = read_points(found[0])[-1] if found else None
if None in rows.values():
    print("ddp throughput: a run left no points (see its log)")
    sys.exit(1)
one, many = rows["one"], rows["many"]
speedup = one["train_time_s"] / many["train_time_s"]
print(f"ddp throughput: {one['samples'] / one['train_time_s']:.0f} img/s on 1 GPU, "
      f"{many['samples'] / many['train_time_s']:.0f} img/s on {n} GPUs: speedup {speedup:.2f}x "
      f"(ideal {n}x); final test_acc {one['test_acc']:.4f} vs {many['test_acc']:.4f}")
EOF
else
  SUMMARY+=("skipped 1-process vs N-process throughput and overhead.py --ddp: this machine has 1 GPU")
fi

echo
echo "== gpu_check summary ($GPUS GPU(s); logs in $LOG)"
for line in "${SUMMARY[@]}"; do echo "$line"; done
grep -h "throughput ratio\|checkpoint size\|checkpoint / epoch\|ddp throughput\|passed\|failed" "$LOG"/*.log 2>/dev/null
if printf '%s\n' "${SUMMARY[@]}" | grep -q '^FAILED'; then exit 1; fi
