#!/usr/bin/env bash
# Run the whole test suite (arguments go to pytest), in the project's own .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv test
exec .venv/bin/python -m pytest "$@"
