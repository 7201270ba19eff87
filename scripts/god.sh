#!/usr/bin/env bash
# Start god here, or on another host: scripts/god.sh [--host HOST] [ARGS...]  (see _role.sh)
source "$(dirname "$0")/_role.sh"
run_role god "$@"
