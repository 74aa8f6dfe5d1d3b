#!/usr/bin/env bash
# Table 3 reproduction on the lent GPU (no Ray): data, the grids in priority order under one
# deadline, then bring back the experiment folder without checkpoints.
set -u
export PYTHONPATH=$PWD
T0=$(date +%s)
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'python', sys.version.split()[0])"
  nproc; date -u; } > $OUT/machine.txt 2>&1
python -c "import yaml" 2>/dev/null || pip install -q --no-index --find-links .carry/wheels pyyaml >> $OUT/machine.txt 2>&1
python -c "import sys; from rest_sweep.cli import main; sys.exit(main(['data', 'make', 'cmnist', '--source', '.carry/fmnist', '--out', '/tmp/data', '--ratios', '1']))" > $OUT/data.log 2>&1
echo "data done at $(( $(date +%s) - T0 )) s" >> $OUT/machine.txt
G=results/table3-cmnist/grids
timeout ${RUN_LIMIT:-450} python benchmarks/reproduce.py run --grid $G/core.yaml --grid $G/rest-code.yaml --grid $G/rest.yaml \
  --set precision=tf32 --data-root /tmp/data --storage /tmp/runs --name table3-cmnist \
  --workers ${WORKERS:-10} --device cuda --deadline ${DEADLINE:-330} --json-out $OUT/run.json > $OUT/run.log 2>&1
echo "run done at $(( $(date +%s) - T0 )) s" >> $OUT/machine.txt
cd /tmp/runs && tar czf $OUT/experiment.tgz --exclude='checkpoints' --exclude='tune' table3-cmnist
echo "all done at $(( $(date +%s) - T0 )) s" >> $OUT/machine.txt
tail -3 $OUT/run.log; cat $OUT/machine.txt
