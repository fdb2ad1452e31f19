# The two commands of the README. Each sets the machine up first (idempotent, fast when done).
.PHONY: setup demo test test-fast lint services mutation

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

# The edit-test loop: engine and API tests on SQLite, no services, in two processes (about
# 1.5 minutes on two cores; 2.6 serially).
test-fast: setup
	.venv/bin/python -m pytest -n 2 tests/engine tests/api

test: setup services lint
	.venv/bin/python -m pytest

# Mutation testing of the core modules against the fast tests that cover them (SQLite only):
# the losses, the flip metrics and report figures, the gate, the job lifecycle and the class map of
# mpt/data.py.
# Configured in pyproject.toml's [tool.mutmut]; 6 to 13 minutes on 2 shared cores. docs/MUTATION.md
# keeps the last result and why each survivor stays.
MUTANTS = 'mpt.losses.*' 'mpt.flips.*' 'contracts.flips.*' 'db.model_versions.gate.*' 'db.updates.lifecycle.*' \
	'mpt.data.x_build_class_map__mutmut_*' 'mpt.data.xǁClassMapǁ*'

mutation: setup
	rm -rf mutants
	start=$$(date +%s); .venv/bin/mutmut run --max-children 2 $(MUTANTS) > mutants.log 2>&1; \
		echo "mutmut run: exit $$?, wall time $$(( $$(date +%s) - start )) s (log: mutants.log)"
	.venv/bin/python scripts/mutation_report.py $(MUTANTS)
