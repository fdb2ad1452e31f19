# The two commands of the README. Each sets the machine up first (idempotent, fast when done).
.PHONY: setup demo test services

setup:
	scripts/setup.sh

services:
	scripts/services.sh

demo: setup
	.venv/bin/python scripts/demo.py

test: setup services
	.venv/bin/python -m pytest
