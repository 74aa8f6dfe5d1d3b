#!/usr/bin/env bash
# Issue 24 on the lent GPU, one call, no Ray, under one clock (END_S seconds, default 510):
#   1. Colored MNIST at 1 % from the carried raw MNIST IDX files ($SRC, default .carry/mnist:
#      the four *.gz files, 11.4 MB; the generators read .gz directly); in the background, the
#      four-ratio Colored MNIST bundle and plain MNIST for stages 3 and 4;
#   2. Table 3 (results/table3-mnist/grids, one file per seed: whole seeds first);
#   3. Table 2's Colored MNIST rows (results/table2-mnist/grids), after copying the ratio-1
#      trials it shares with Table 3 (benchmarks/issue24_share_trials.py);
#   4. sparse double descent on MNIST (results/sdd-mnist/grids), only when asked: STAGES="table3
#      table2 sdd" (seed 41 was trained on the CPU, results/sdd-mnist/RUN.md);
#   5. benchmarks/reproduce.py summarize of each experiment, then the small files to $OUT.
# Each stage gets the time left less TAIL_S (summaries); its --deadline stops starting trials
# TRIAL_S before that (a trial started then still finishes), and `timeout` ends the stage.
# What is not finished stays pending: a later call with the unpacked experiments.tgz carried as
# $CARRY/runs trains only that. $OUT gets 5 files (the device returns at most 8): machine.txt,
# data.log, run.log, summaries.tgz (per results folder: tables.md, trials.parquet,
# epochs.parquet, levels.parquet, tables/*.md, figures, run JSON) and experiments.tgz (ledgers
# and trial metrics, no checkpoints). $CARRY (default .carry, git-ignored) is filled here by
# benchmarks/gpu_call_issue24_carry.sh.
#
# GPU call (carry .carry; timeout_s 560):   bash benchmarks/gpu_call_issue24.sh
# Tiny CPU run (a few minutes, 2 cores):
#   OUT=/tmp/i24-out WORK=/tmp/i24-work PY=.venv/bin/python SRC=~/.cache/rest-sweep/sources/mnist \
#   DEVICE=cpu EPOCHS=1 LEVELS=2 LIMIT=2000 VALID=200 TEST=300 WORKERS=2 SEEDS=41 \
#   EXTRA_SET=width=8 T2_SET=disent_swap_step=10 HIDE_RAY=1 bash benchmarks/gpu_call_issue24.sh
set -u
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
CARRY=${CARRY:-.carry}
SRC=${SRC:-$CARRY/mnist}
WORK=${WORK:-/tmp/issue24}
OUT=${OUT:?set OUT to the folder the files go to}
DEVICE=${DEVICE:-cuda}
WORKERS=${WORKERS:-6}
SDD_WORKERS=${SDD_WORKERS:-2}
SEEDS=${SEEDS:-41 42 43}
END=${END_S:-510}
TAIL_S=${TAIL_S:-60}
TRIAL_S=${TRIAL_S:-75}
MIN_STAGE_S=${MIN_STAGE_S:-90}
STAGES=${STAGES:-table3 table2}  # add sdd for more SDD seeds (seed 41: CPU, results/sdd-mnist)
mkdir -p "$OUT" "$WORK/runs" "$WORK/summaries"
# A later call continues: the unpacked experiments.tgz carried as $CARRY/runs (finished trials
# are skipped; unfinished ones start again, their checkpoints were not brought back).
[ -d "$CARRY/runs" ] && cp -r "$CARRY/runs/." "$WORK/runs/"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ "${HIDE_RAY:-0}" = 1 ]; then  # prove the no-Ray path: `import ray` fails in every process
  mkdir -p "$WORK/noray/ray"
  echo 'raise ModuleNotFoundError("ray is hidden (HIDE_RAY=1): the GPU host has no Ray", name="ray")' \
    > "$WORK/noray/ray/__init__.py"
  export PYTHONPATH=$WORK/noray:$PYTHONPATH
fi
T0=$(date +%s)
now() { echo $(( $(date +%s) - T0 )); }
left() { echo $(( END - $(now) )); }
note() { echo "$1 at $(now) s" | tee -a "$OUT/machine.txt"; }

SETS=()  # tiny mode: fewer epochs and levels, any other KEY=VALUE
[ -n "${EPOCHS:-}" ] && SETS+=(--set "epochs=$EPOCHS")
for kv in ${EXTRA_SET:-}; do SETS+=(--set "$kv"); done
T2_SETS=("${SETS[@]}")  # Table 2 only (DisEnt's keys), e.g. T2_SET=disent_swap_step=10 at 1 epoch
for kv in ${T2_SET:-}; do T2_SETS+=(--set "$kv"); done
SDD_SETS=("${SETS[@]}")
[ -n "${LEVELS:-}" ] && SDD_SETS+=(--set "levels=$LEVELS")
SIZE=()
[ -n "${LIMIT:-}" ] && SIZE+=(--limit "$LIMIT")
[ -n "${VALID:-}" ] && SIZE+=(--valid-size "$VALID")
[ -n "${TEST:-}" ] && SIZE+=(--test-size "$TEST")

{ nvidia-smi --query-gpu=name,driver_version,memory.total,compute_mode --format=csv,noheader 2>&1 \
    || echo "no nvidia-smi"
  $PY -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'python', sys.version.split()[0])"
  $PY -c "import ray" 2>/dev/null && echo "ray importable" || echo "no ray"
  echo "cpus $(nproc)"; date -u
  echo "device $DEVICE workers $WORKERS seeds $SEEDS end_s $END sets ${SETS[*]:-none}"; } \
  > "$OUT/machine.txt" 2>&1

# summarize needs plotly (analysis.figures), which the GPU image lacks: carried as a wheel in
# $CARRY/wheels (benchmarks/gpu_call_issue24_carry.sh). Without it the summaries are skipped
# and made on the CPU machine from experiments.tgz (RUN.md). PNGs need kaleido and a browser.
if ls "$CARRY"/wheels/*.whl >/dev/null 2>&1 && ! $PY -c "import plotly.graph_objects" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" "$CARRY"/wheels/*.whl \
    >> "$OUT/machine.txt" 2>&1 && export PYTHONPATH=$PYTHONPATH:$WORK/site
fi
$PY -c "import plotly.graph_objects" 2>/dev/null && SUMMARIZE=1 || SUMMARIZE=0
echo "summaries here: $SUMMARIZE" >> "$OUT/machine.txt"

MPS_ON=0
if [ "${MPS:-1}" = 1 ] && [ "${DEVICE#cuda}" != "$DEVICE" ] && command -v nvidia-cuda-mps-control >/dev/null; then
  export CUDA_MPS_PIPE_DIRECTORY=$WORK/mps-pipe CUDA_MPS_LOG_DIRECTORY=$WORK/mps-log
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  if nvidia-cuda-mps-control -d >> "$OUT/machine.txt" 2>&1; then
    MPS_ON=1; trap 'echo quit | nvidia-cuda-mps-control' EXIT
  else
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
  fi
fi
echo "cuda mps: $MPS_ON" >> "$OUT/machine.txt"

# 1. data: ratio 1 now (Table 3), the rest in the background while Table 3 trains. The
# generator's random streams are per (ratio, split), so ratio 1 is the same in both roots.
MAKE=("$PY" -m rest_sweep.cli data make)
timeout 120 "${MAKE[@]}" cmnist --source "$SRC" --out "$WORK/data1" --ratios 1 "${SIZE[@]}" \
  > "$OUT/data.log" 2>&1
note "data (ratio 1) done (rc $?)"
( timeout 240 "${MAKE[@]}" cmnist --source "$SRC" --out "$WORK/data" --ratios 0.5,1,2,5 "${SIZE[@]}" \
    && timeout 120 "${MAKE[@]}" mnist --source "$SRC" --out "$WORK/data" "${SIZE[@]}"
  echo "background data rc $?" ) > "$WORK/data-bg.log" 2>&1 &
BG=$!

RUN=("$PY" benchmarks/reproduce.py run --storage "$WORK/runs" --device "$DEVICE")
stage() {  # stage NAME WORKERS TRIAL_S DATA_ROOT SETS... -- GRID...
  local name=$1 workers=$2 trial_s=$3 root=$4; shift 4
  local sets=() grids=()
  while [ "$1" != -- ]; do sets+=("$1"); shift; done; shift
  for g in "$@"; do grids+=(--grid "$g"); done
  local avail=$(( $(left) - TAIL_S ))
  if [ $avail -lt "$MIN_STAGE_S" ]; then
    note "$name skipped ($avail s left before the summaries)"; return
  fi
  local deadline=$(( avail - trial_s )); [ $deadline -lt 1 ] && deadline=1
  echo "== $name: ${grids[*]}, $workers workers, deadline $deadline s, limit $avail s" >> "$OUT/run.log"
  timeout -k 15 $avail "${RUN[@]}" "${grids[@]}" "${sets[@]}" --data-root "$root" --name "$name" \
    --workers "$workers" --deadline $deadline --json-out "$WORK/summaries/$name.json" \
    >> "$OUT/run.log" 2>&1
  note "$name done (rc $?)"
}
BG_DONE=0
wait_bg() {
  [ $BG_DONE = 1 ] && return
  wait $BG; BG_DONE=1
  cat "$WORK/data-bg.log" >> "$OUT/data.log"; note "background data done"
}

T3=(); T2=(); for s in $SEEDS; do
  T3+=(results/table3-mnist/grids/core-s$s.yaml); T2+=(results/table2-mnist/grids/seed$s.yaml)
done
SDD=(results/sdd-mnist/grids/lottery-finetune.yaml)
# other grid files (the CPU test's cut-down copies): space-separated paths
[ -n "${GRIDS_T3:-}" ] && read -r -a T3 <<< "$GRIDS_T3"
[ -n "${GRIDS_T2:-}" ] && read -r -a T2 <<< "$GRIDS_T2"
[ -n "${GRIDS_SDD:-}" ] && read -r -a SDD <<< "$GRIDS_SDD"
for st in $STAGES; do
  case $st in
    table3) stage table3-mnist "$WORKERS" "$TRIAL_S" "$WORK/data1" "${SETS[@]}" -- "${T3[@]}" ;;
    table2)
      wait_bg
      if [ -d "$WORK/runs/table3-mnist" ] && [ $(( $(left) - TAIL_S )) -ge "$MIN_STAGE_S" ]; then
        $PY benchmarks/issue24_share_trials.py --storage "$WORK/runs" --src table3-mnist \
          --dst table2-mnist "${T2[@]/#/--grid=}" "${T2_SETS[@]}" >> "$OUT/run.log" 2>&1
      fi
      stage table2-mnist "$WORKERS" "$TRIAL_S" "$WORK/data" "${T2_SETS[@]}" -- "${T2[@]}" ;;
    sdd)
      wait_bg
      stage sdd-mnist "$SDD_WORKERS" 0 "$WORK/data" "${SDD_SETS[@]}" -- "${SDD[@]}" ;;
  esac
done
wait_bg

# 5. summaries (each experiment that exists), then two tarballs of small files.
for name in table3-mnist table2-mnist sdd-mnist; do
  [ -f "$WORK/runs/$name/experiment.json" ] && [ $SUMMARIZE = 1 ] || continue
  timeout 120 "$PY" benchmarks/reproduce.py summarize --storage "$WORK/runs" --name "$name" \
    --out "$WORK/summaries/$name" ${NO_PNG:+--no-png} >> "$OUT/run.log" 2>&1
  rc=$?
  [ -f "$WORK/summaries/$name.json" ] && mv "$WORK/summaries/$name.json" "$WORK/summaries/$name/run.json"
  note "$name summarized (rc $rc)"
done
cp "$OUT/machine.txt" "$WORK/summaries/machine.txt"
tar czf "$OUT/summaries.tgz" -C "$WORK/summaries" --exclude='*.html' .
tar czf "$OUT/experiments.tgz" -C "$WORK/runs" --exclude=checkpoints --exclude='*.pt' --exclude=tune .
note "all done"
[ $MPS_ON = 1 ] && { echo quit | nvidia-cuda-mps-control; trap - EXIT; }
grep -h -E '^\{|: (completed|deadline|interrupted|errors);' "$OUT/run.log" | tail -8
cat "$OUT/machine.txt"
