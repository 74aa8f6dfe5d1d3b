#!/usr/bin/env bash
# The README's main job: build a real Colored Fashion-MNIST bundle, run the `demo` grid on an
# embedded Ray, print the sweep's status and write the HTML report.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-demo-out}
default_source=/usr/share/datasets/fashion-mnist
source=${SOURCE:-$default_source}
has_idx() { [ -f "$1/train-images-idx3-ubyte.gz" ] || [ -f "$1/train-images-idx3-ubyte" ]; }
if ! has_idx "$source" && [ "$source" = "$default_source" ] && [ "$(id -u)" = 0 ] \
    && command -v apt-get >/dev/null; then
    echo "demo: installing the Debian package dataset-fashion-mnist (real offline data)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist
fi
if ! has_idx "$source"; then
    echo "demo: no MNIST-format files in $source." >&2
    echo "  Install them with 'sudo apt-get install dataset-fashion-mnist', or run" >&2
    echo "  'make demo SOURCE=DIR' with DIR holding train-images-idx3-ubyte[.gz]," >&2
    echo "  train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]." >&2
    exit 1
fi
rs=.venv/bin/rest-sweep
if $rs data verify "$out/data/cmnist" >/dev/null 2>&1; then
    echo "demo: reusing the verified bundle in $out/data"
else  # `data make` verifies what it writes and prints the counts
    $rs data make cmnist --source "$source" --out "$out/data" --ratios 1 --limit 12000 \
        --valid-size 1000 --seed 0
fi
$rs run --grid demo --data-root "$out/data" --storage "$out/experiments" --name demo
$rs status --storage "$out/experiments" --name demo
$rs report --storage "$out/experiments" --name demo --out "$out/report"
echo
echo "demo: done. Report: $out/report/report.html; trials: $out/experiments/demo/trials/"
