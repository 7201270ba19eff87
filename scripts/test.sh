#!/usr/bin/env bash
# Run the whole test suite (arguments go to pytest), in the project's own .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv test
# Two tests at a time on a machine with two cores or more (-n 0 after this runs them one by one):
# most of a test is waiting for real processes to start and answer. A worker out of tests
# takes some of the other's (worksteal): the slow ones do not all end on one.
exec .venv/bin/python -m pytest -n auto --maxprocesses 2 --dist worksteal "$@"
