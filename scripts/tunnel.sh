#!/usr/bin/env bash
# Reach god through an ssh tunnel, for a network you do not trust (or use TLS: see README).
#
#   scripts/tunnel.sh GOD_HOST [LOCAL_PORT] [GOD_PORT]
#
# On GOD_HOST, run god bound to loopback only (scripts/god.sh --address 127.0.0.1:5678).
# This forwards 127.0.0.1:LOCAL_PORT here to it over ssh (encrypted, and ssh's own
# authentication on top of the authkey); then run producers and consumers here with
# GOD_ADDRESS=127.0.0.1:LOCAL_PORT. Stop it with Ctrl-C.
set -euo pipefail
host="${1:?usage: tunnel.sh GOD_HOST [LOCAL_PORT] [GOD_PORT]}"
local_port="${2:-5678}"
god_port="${3:-5678}"
echo "forwarding 127.0.0.1:$local_port to $host:127.0.0.1:$god_port; use GOD_ADDRESS=127.0.0.1:$local_port" >&2
exec ssh -N -o ExitOnForwardFailure=yes -o ServerAliveInterval=15 -L "127.0.0.1:$local_port:127.0.0.1:$god_port" "$host"
