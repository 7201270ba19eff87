#!/usr/bin/env bash
# Start producer here, or on another host: scripts/producer.sh [--host HOST] [ARGS...]  (see _role.sh)
source "$(dirname "$0")/_role.sh"
run_role producer "$@"
