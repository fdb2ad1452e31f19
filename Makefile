# The two commands of the README. Each sets the machine up first (idempotent, fast when done).
.PHONY: setup demo test test-fast lint services

setup:
	scripts/setup.sh

services:
	scripts/services.sh

demo: setup
	.venv/bin/python scripts/demo.py

# Linter, formatter check and type checker over the whole tree.
lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

# The edit-test loop: engine and API tests on SQLite, no services.
test-fast: setup
	.venv/bin/python -m pytest tests/engine tests/api

test: setup services lint
	.venv/bin/python -m pytest
