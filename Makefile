# The two set-up commands of the README: `make demo` (the main job) and `make test`.
PY := .venv/bin/python
DEMO_OUT ?= demo-out

.PHONY: venv demo test lint format

venv:
	@bash scripts/ensure_venv.sh dev

demo: venv
	@bash scripts/demo.sh "$(DEMO_OUT)"

lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

test: lint
	$(PY) -m pytest -q

format: venv
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .
