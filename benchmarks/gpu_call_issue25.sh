#!/usr/bin/env bash
# Issue 25 (fused trial groups) on the lent GPU: one call, gpu_throughput.py alone, under one
# clock. Priority order (plan_jobs): peak; single trials at the aggregates' precision only
# (Simple CNN tf32, ResNet-18 bf16); fused K = 1..32 in one process, Simple CNN then ResNet-18
# 32 px; the REST references over a real epoch; 2 and 4 fused processes under MPS; each
# model's MPS aggregate at K = 4 (the ratios' baseline); 224-px fused K = 2, 4; what the
# 2026-11-30 call left out (ResNet-18 plain K = 8, MPS K = 2 and 8, 224-px start-up with
# autotuning off); then repeats of that call's aggregates and start-up while the budget lasts.
#
# GPU call (timeout_s 560; no carry needed):   bash benchmarks/gpu_call_issue25.sh
# Tiny CPU check of the script (about a minute):
#   OUT=/tmp/i25-out PY=.venv/bin/python EXTRA="--tiny --device cpu" bash benchmarks/gpu_call_issue25.sh
# Files to $OUT: machine.txt, gpu.json (rewritten after every measurement), gpu.log.
# Then, on the CPU side: copy gpu.json to benchmarks/results/gpu.json and run
#   python benchmarks/grid_cost.py --from-gpu-json benchmarks/results/gpu.json --write-table
set -u
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
OUT=${OUT:?set OUT to the folder the files go to}
PY=${PY:-python3}
END=${END_S:-535}      # the whole call, seconds
BUDGET=${BUDGET_S:-470}  # gpu_throughput's --budget-s: no measurement starts past it
T0=$(date +%s)
mkdir -p "$OUT"
{ nvidia-smi --query-gpu=name,driver_version,memory.total,compute_mode --format=csv,noheader 2>&1 \
    || echo "no nvidia-smi"
  $PY -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'python', sys.version.split()[0])"
  command -v nvidia-cuda-mps-control >/dev/null && echo "mps control: yes" || echo "mps control: no"
  echo "cpus $(nproc)"; date -u; } > "$OUT/machine.txt" 2>&1
LEFT=$(( END - ($(date +%s) - T0) - 10 ))
[ $BUDGET -gt $(( LEFT - 45 )) ] && BUDGET=$(( LEFT - 45 ))
# SIGTERM from `timeout` exits through the script's clean-up (MPS daemon stopped); -k: the rest.
timeout -k 10 $LEFT $PY benchmarks/gpu_throughput.py --out "$OUT/gpu.json" --budget-s $BUDGET \
  --aggregate-precision simple_cnn=tf32,resnet18=bf16 --single-precisions aggregate ${EXTRA:-} \
  > "$OUT/gpu.log" 2>&1
echo "gpu_throughput rc $? after $(( $(date +%s) - T0 )) s (budget $BUDGET s)" >> "$OUT/machine.txt"
cat "$OUT/machine.txt"
grep -v '^GPU_JSON' "$OUT/gpu.log" | tail -60
