#!/usr/bin/env bash
# Start consumer here, or on another host: scripts/consumer.sh [--host HOST] [ARGS...]  (see _role.sh)
source "$(dirname "$0")/_role.sh"
run_role consumer "$@"
