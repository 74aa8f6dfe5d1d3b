#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and link it as ./.venv.
#
# The environment is cached under ~/.cache/rest-sweep/ keyed by a hash of the dependency spec
# (pyproject.toml) and the Python version, so a second run on the same machine reuses it and a
# changed spec builds a fresh one. The project itself is installed editable on every call
# (a few seconds), so each clone's `rest-sweep` points at its own code.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
extras=${1:-dev}
key=$({ cat pyproject.toml; "$python" --version; echo "$extras"; } | sha256sum | cut -c1-16)
cache=${REST_SWEEP_VENV_CACHE:-$HOME/.cache/rest-sweep}/venv-$key
if [ ! -x "$cache/bin/python" ] || [ ! -f "$cache/.complete" ]; then
    echo "ensure_venv: building $cache (first run on this machine: ~2 min, torch is large)"
    rm -rf "$cache"
    mkdir -p "$(dirname "$cache")"
    "$python" -m venv "$cache"
    "$cache/bin/pip" install -q --upgrade pip
    "$cache/bin/pip" install -q -e ".[$extras]"
    touch "$cache/.complete"
    # Environments of older dependency specs are ~6 GB each: drop those unused for a week.
    find "$(dirname "$cache")" -maxdepth 1 -name 'venv-*' ! -path "$cache" -mtime +7 \
        -exec rm -rf {} + 2>/dev/null || true
fi
if [ -e .venv ] && [ ! -L .venv ]; then
    echo "ensure_venv: ./.venv exists and is not a link to the cache; remove it first" >&2
    exit 1
fi
ln -sfn "$cache" .venv
"$cache/bin/pip" install -q --no-deps --no-build-isolation -e . 2>/dev/null \
    || "$cache/bin/pip" install -q --no-deps -e .
