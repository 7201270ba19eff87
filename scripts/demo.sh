#!/usr/bin/env bash
# The whole system on this machine: god, two consumers and a producer of a few rounds.
# God's output (the results, as it prints them, and its dashboard's address) comes to this terminal; everything this
# script starts is stopped before it exits, and its folder (results, journal, logs) removed
# unless it is run as: scripts/demo.sh --keep
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv
py=.venv/bin/python

# A fresh key for this run, passed in the environment (never on a command line).
GOD_AUTHKEY="$($py -c 'import secrets; print(secrets.token_hex(32))')"
port="$($py -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export GOD_AUTHKEY GOD_ADDRESS="127.0.0.1:$port"
keep=false
case "${1:-}" in
    --keep) keep=true ;;
    "") ;;
    *) echo "usage: scripts/demo.sh [--keep]   (--keep: leave the results, journal and logs behind)" >&2; exit 2 ;;
esac
work="$(mktemp -d)"
pids=()

cleanup() {  # newest first: consumers say goodbye before god stops
    local i
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
    done
}
finish() {
    cleanup
    if [ "$keep" = true ]; then echo "== kept: $work"; else rm -rf "$work"; fi
}
trap finish EXIT

echo "== god on $GOD_ADDRESS (results: $work/results.jsonl, journal: $work/journal.sqlite3, logs: $work/*.log)"
# Process substitution, not a pipe: $! must be god's own pid for the stop to reach it.
$py -m god --results "$work/results.jsonl" --journal "$work/journal.sqlite3" --http 0 2>"$work/god.log" > >(tee "$work/god.out") &
pids+=($!)
for _ in $(seq 100); do grep -q "listening on" "$work/god.out" 2>/dev/null && break; sleep 0.1; done
grep -q "listening on" "$work/god.out" || { echo "god did not start:"; cat "$work/god.log"; exit 1; }
# God writes its dashboard's login address only to a terminal (here its output goes to a file too): asked with the key.
echo "== dashboard: $($py -m god url)"

for i in 1 2; do
    $py -m consumer --processes 1 2>"$work/consumer$i.log" &
    pids+=($!)
done

echo "== producer: 3 rounds of 5 random integers, 1 s apart"
$py -m producer --rounds 3 --per-round 5 --interval 1

for _ in $(seq 100); do
    [ "$(wc -l < "$work/results.jsonl" 2>/dev/null || echo 0)" -ge 15 ] && break
    sleep 0.1
done
echo "== stopping consumers and god"
cleanup
pids=()
echo "== done: $(wc -l < "$work/results.jsonl") results$([ "$keep" = true ] || echo " (scripts/demo.sh --keep leaves them in a folder)")"
