#!/usr/bin/env bash
# The lent GPU's one call of 2026-11-30 (issues 14 and 15), on the no-Ray path, under one clock:
#   1. Colored Fashion-MNIST from the carried raw IDX files (.carry/fmnist);
#   2. Table 3: the 6 unfinished REST seed-43 trials of the core grid (issue 14's minimum);
#   3. the paired tf32/bf16 ResNet-18 check (results/bf16-paired/grid.yaml);
#   4. gpu_throughput.py with the time left (issue 15);
#   5. more of the Table 3 grid if time is left; then the experiment folders, no checkpoints.
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
T0=$(date +%s); END=${END_S:-565}
left() { echo $(( END - ($(date +%s) - T0) )); }
{ nvidia-smi --query-gpu=name,driver_version,memory.total,compute_mode --format=csv,noheader
  python -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'python', sys.version.split()[0])"
  nproc; date -u; } > $OUT/machine.txt 2>&1
python -c "import yaml" 2>/dev/null || pip install -q --no-index --find-links .carry/wheels pyyaml >> $OUT/machine.txt 2>&1
timeout 90 python -m rest_sweep.cli data make cmnist --source .carry/fmnist --out /tmp/data --ratios 1 > $OUT/data.log 2>&1
echo "data done at $(( $(date +%s) - T0 )) s" >> $OUT/machine.txt
mkdir -p /tmp/runs && cp -r results/table3-cmnist/experiment/table3-cmnist /tmp/runs/
G=results/table3-cmnist/grids
RUN="python benchmarks/reproduce.py run --data-root /tmp/data --storage /tmp/runs --device cuda"
echo "== A: core grid, 6 workers" >> $OUT/table3.log
timeout 170 $RUN --grid $G/core.yaml --set precision=tf32 --name table3-cmnist --workers 6 >> $OUT/table3.log 2>&1
echo "table3 core done at $(( $(date +%s) - T0 )) s" >> $OUT/machine.txt
timeout 130 $RUN --grid results/bf16-paired/grid.yaml --name bf16-paired --workers 2 > $OUT/paired.log 2>&1
echo "paired done at $(( $(date +%s) - T0 )) s" >> $OUT/machine.txt
B=$(( $(left) - 50 ))
if [ $B -gt 120 ]; then
  timeout $(( B + 40 )) python benchmarks/gpu_throughput.py --out $OUT/gpu.json --budget-s $B \
    --aggregate-precision simple_cnn=tf32,resnet18=bf16 > $OUT/gpu.log 2>&1
fi
echo "throughput done at $(( $(date +%s) - T0 )) s" >> $OUT/machine.txt
L=$(left)
if [ $L -gt 70 ]; then
  echo "== B: all grids, 4 workers, deadline $(( L - 55 ))" >> $OUT/table3.log
  timeout $(( L - 10 )) $RUN --grid $G/core.yaml --grid $G/rest-code.yaml --grid $G/rest.yaml \
    --set precision=tf32 --name table3-cmnist --workers 4 --deadline $(( L - 55 )) >> $OUT/table3.log 2>&1
fi
echo "table3 more done at $(( $(date +%s) - T0 )) s" >> $OUT/machine.txt
cd /tmp/runs && tar czf $OUT/experiments.tgz --exclude='checkpoints' --exclude='tune' table3-cmnist bf16-paired
echo "all done at $(( $(date +%s) - T0 )) s" >> $OUT/machine.txt
cat $OUT/machine.txt; tail -4 $OUT/table3.log $OUT/paired.log; tail -25 $OUT/gpu.log | grep -v GPU_JSON
