#!/usr/bin/env bash
# Ray Jobs recipe (docs/cluster.md, way (a)): run the sweep's driver on a running Ray cluster.
#
#   bash docs/cluster/ray-job.sh run      # start the sweep; the same again continues it
#   bash docs/cluster/ray-job.sh resume   # after a lost driver: every unfinished trial
#   bash docs/cluster/ray-job.sh status   # where the sweep stands (read from its storage)
#
# Run it from the repository root: `--working-dir .` ships this checkout to the cluster (what
# .gitignore lists stays here), so the driver and every trial run this code, and a YAML grid
# file of the checkout can be given to --grid. The driver runs on the head node: Ctrl-C on the
# log stream, a closed laptop or a lost VPN do not stop the sweep.
# Needs on this machine, in the checkout: pip install -e '.[cluster]' (ray[default] provides
# `ray job`). Every setting below is a variable: override it in the environment, e.g.
# GPUS_PER_TRIAL=0 NAME=try1 bash docs/cluster/ray-job.sh run
# The script waits for the job and exits with its outcome: 0 only when Ray says SUCCEEDED.
set -euo pipefail

# The cluster's Ray Jobs API (the dashboard port). `ray dashboard docs/cluster/cluster.yaml`
# or `kubectl port-forward service/<raycluster>-head-svc 8265:8265` give http://localhost:8265.
RAY_DASHBOARD=${RAY_DASHBOARD:-http://ray-head.example.internal:8265}

# Token auth (clusters started with RAY_AUTH_MODE=token): Ray sends the token from
# RAY_AUTH_TOKEN, else from the file named by RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token.
# `ray get-auth-token` on the head prints it. RAY_AUTH_MODE=disabled: a cluster without auth.
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}

# Paths as every node of the cluster sees them (one NFS export mounted at /mnt/rest on every
# node). STORAGE may also be a bucket URI, e.g. s3://my-bucket/sweeps.
DATA_ROOT=${DATA_ROOT:-/mnt/rest/data}
STORAGE=${STORAGE:-/mnt/rest/sweeps}
GRID=${GRID:-paper-all}
NAME=${NAME:-paper-all}
JOB_ID=${JOB_ID:-rest-sweep-$NAME-$(date +%Y%m%d-%H%M%S)}
# The folder shipped to the cluster as the job's working directory: this checkout.
WORKING_DIR=${WORKING_DIR:-.}

# Resources per trial. GPUS_PER_TRIAL: a GPU share per model (MODEL=F,...), or one number for
# every trial; 0 on a CPU-only cluster (trials then ask for CPUs only). See docs/cluster.md,
# section 7.
GPUS_PER_TRIAL=${GPUS_PER_TRIAL:-simple_cnn=0.25,resnet18=0.5}
CPUS_PER_TRIAL=${CPUS_PER_TRIAL:-2}
MAX_FAILURES=${MAX_FAILURES:-3}
# Checkpoint cadence and what a finished trial keeps (docs/cluster.md, section 8).
CHECKPOINT_EVERY=${CHECKPOINT_EVERY:-5}
KEEP_CHECKPOINTS=${KEEP_CHECKPOINTS:-1}
FINAL_CHECKPOINT=${FINAL_CHECKPOINT:-weights}

case "${1:-run}" in
run)
    ray job submit --address "$RAY_DASHBOARD" --working-dir "$WORKING_DIR" --submission-id "$JOB_ID" --no-wait -- \
        rest-sweep run --grid "$GRID" --data-root "$DATA_ROOT" --storage "$STORAGE" --name "$NAME" \
        --gpus-per-trial "$GPUS_PER_TRIAL" --cpus-per-trial "$CPUS_PER_TRIAL" --max-failures "$MAX_FAILURES" \
        --set "checkpoint_every=$CHECKPOINT_EVERY" --set "keep_checkpoints=$KEEP_CHECKPOINTS" \
        --set "final_checkpoint=$FINAL_CHECKPOINT"
    ;;
resume)
    # The last launch's settings (GPU shares, failures...) come from the experiment's ledger.
    ray job submit --address "$RAY_DASHBOARD" --working-dir "$WORKING_DIR" --submission-id "$JOB_ID" --no-wait -- \
        rest-sweep resume --storage "$STORAGE" --name "$NAME"
    ;;
status)
    ray job submit --address "$RAY_DASHBOARD" --submission-id "$JOB_ID" --no-wait -- \
        rest-sweep status --storage "$STORAGE" --name "$NAME"
    ;;
*)
    echo "usage: $0 [run|resume|status]" >&2
    exit 2
    ;;
esac

if [ "${1:-run}" != status ]; then
    echo "following job $JOB_ID; Ctrl-C stops following, not the sweep"
    echo "stop the sweep: ray job stop --address $RAY_DASHBOARD $JOB_ID"
fi
# The log stream ends when the job ends, but its exit code does not say how the job ended:
# the job's status does.
ray job logs --address "$RAY_DASHBOARD" --follow "$JOB_ID" || true
JOB_STATUS=$(ray job status --address "$RAY_DASHBOARD" "$JOB_ID" 2>&1) || true
# A failed job's status ends with its last logs again (streamed just above): cut there.
echo "${JOB_STATUS%%, last available logs*}"
case "$JOB_STATUS" in
*"Job '$JOB_ID' succeeded"*) exit 0 ;;
esac
echo "job $JOB_ID did not succeed (status above); logs again: ray job logs --address $RAY_DASHBOARD $JOB_ID" >&2
exit 1
