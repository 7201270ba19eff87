#!/usr/bin/env bash
# Start, stop and look at a whole cluster described by a hosts file.
#
#   scripts/cluster.sh up HOSTS_FILE     god first (waits until it listens), then producers and consumers
#   scripts/cluster.sh status            what runs where (an ended process with its exit code), and
#                                        god's counts; exits 1 if a process ended with another code than 0
#   scripts/cluster.sh down              stop what 'up' started, newest first, by the pids it recorded
#
# HOSTS_FILE has one line per process: ROLE HOST [ARGS...] (HOST 'local' is this machine),
# and optionally 'address HOST:PORT', the address producers and consumers use to reach god
# (default: god's host, port 5678). '#' starts a comment. For example:
#
#   address   10.0.0.1:5678
#   god       coord      --results /srv/god/results.jsonl
#   producer  data1      --from /srv/tasks.jsonl
#   consumer  compute1   --processes 8
#   consumer  compute2   --processes 8
#
# Remote hosts are reached through GOD_REMOTE (see _role.sh; default ssh). The authkey comes
# from GOD_AUTHKEY or GOD_AUTHKEY_FILE and travels to god on stdin; producers and consumers get
# god's connection file (its address, key and certificate: god speaks TLS beyond its machine)
# the same way, fetched from god's host once it listens. State and logs: GOD_CLUSTER_DIR
# (default .cluster in the repository).
set -euo pipefail
SCRIPTS="$(cd "$(dirname "$0")" && pwd)"
source "$SCRIPTS/_role.sh"
STATE="${GOD_CLUSTER_DIR:-$REPO/.cluster}"
PIDS="$STATE/pids"  # lines: ROLE HOST PID LAUNCHER_PID LOG
LISTEN_WAIT_S="${GOD_LISTEN_WAIT_S:-120}"  # god may first have to make its .venv
STOP_WAIT_S=20

die() { echo "cluster: $*" >&2; exit 1; }

alive() {  # alive HOST PID
    if [ "$1" = "local" ]; then kill -0 "$2" 2>/dev/null; else remote_command "$1" "kill -0 $2" 2>/dev/null; fi
}

signal() {  # signal HOST PID SIGNAL
    if [ "$1" = "local" ]; then kill "-$3" "$2" 2>/dev/null || true
    else remote_command "$1" "kill -$3 $2" 2>/dev/null || true; fi
}

# launch ROLE HOST LOG ARGS...: start one role in the background; records it once its pid is known.
# The launcher waits for the role (here, or its remote-exec command) and appends its exit code
# to the log, which is where 'status' finds it.
launch() {
    local role="$1" host="$2" log="$3" launcher pid=""
    shift 3
    : > "$log"  # made here: the loop below reads it before the background shell may have opened it
    ( set +e; GOD_SHOW_PID=1 "$SCRIPTS/$role.sh" --host "$host" "$@"; echo "exited with code $?" ) >> "$log" 2>&1 < /dev/null &
    launcher=$!
    for _ in $(seq 300); do
        pid="$(sed -n 's/^remote pid \([0-9]*\)$/\1/p' "$log" | head -1)"
        [ -n "$pid" ] && break
        kill -0 "$launcher" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$pid" ] || { cat "$log" >&2; die "$role on $host did not start (log: $log)"; }
    echo "$role $host $pid $launcher $log" >> "$PIDS"
    echo "started $role on $host (pid $pid, log $log)"
}

up() {
    local hosts="${1:?usage: cluster.sh up HOSTS_FILE}" role host address="" god_host="" n=0
    [ -f "$hosts" ] || die "no hosts file $hosts"
    if [ -s "$PIDS" ]; then
        while read -r role host pid _; do
            alive "$host" "$pid" && die "already up ($role on $host, pid $pid): run 'cluster.sh down' first"
        done < "$PIDS"
    fi
    mkdir -p "$STATE/logs"
    : > "$PIDS"
    address="$(awk '$1 == "address" { print $2 }' "$hosts" | tail -1)"
    god_host="$(awk '$1 == "god" { print $2 }' "$hosts" | head -1)"
    [ -n "$god_host" ] || die "$hosts has no god line"
    [ -n "$address" ] || address="$god_host:5678"
    local port="${address##*:}"
    # God first, listening on every interface at the port clients are told.
    local -a args
    read -r -a args <<< "$(awk '$1 == "god" { $1 = ""; $2 = ""; print; exit }' "$hosts")"
    local log="$STATE/logs/god-$god_host.log"
    launch god "$god_host" "$log" --address "0.0.0.0:$port" "${args[@]}"
    for _ in $(seq $((LISTEN_WAIT_S * 10))); do
        grep -q "^listening on" "$log" && break
        alive "$god_host" "$(awk '$1 == "god" { print $3 }' "$PIDS")" || { cat "$log" >&2; down; die "god did not start"; }
        sleep 0.1
    done
    grep -q "^listening on" "$log" || { cat "$log" >&2; down; die "god did not listen within ${LISTEN_WAIT_S}s"; }
    echo "$address" > "$STATE/address"
    echo "god listens; clients use GOD_ADDRESS=$address"
    export GOD_ADDRESS="$address"
    # God beyond its machine speaks TLS with a certificate of its own: the clients get its
    # connection file (address, key, certificate) on stdin, as they would get the key.
    local conn
    conn="$(sed -n 's/^connection file: \([^ ]*\) .*/\1/p' "$log" | tail -1)"
    if [ -n "$conn" ]; then
        ( umask 077
          if [ "$god_host" = "local" ]; then cat "$conn"; else remote_command "$god_host" "cat $(printf %q "$conn")"; fi \
              > "$STATE/connection" ) || { down; die "cannot fetch god's connection file $conn from $god_host"; }
        export GOD_CONNECTION="$STATE/connection"
        echo "clients get god's connection file ($conn, kept as $STATE/connection)"
    fi
    while read -r role host rest; do
        case "$role" in producer|consumer) ;; *) continue ;; esac
        n=$((n + 1))
        read -r -a args <<< "$rest"
        launch "$role" "$host" "$STATE/logs/$role-$host-$n.log" "${args[@]}"
    done < <(sed 's/#.*//' "$hosts")
}

status() {
    [ -s "$PIDS" ] || die "nothing is up (no $PIDS)"
    local role host pid launcher log god_host="" code failed=0
    printf '%-9s %-16s %-8s %s\n' ROLE HOST PID STATE
    while read -r role host pid launcher log; do
        if alive "$host" "$pid"; then
            state=running
        else
            # its launcher writes the code as it ends, a moment after the process did
            for _ in $(seq 20); do kill -0 "$launcher" 2>/dev/null || break; sleep 0.1; done
            code="$(sed -n 's/^exited with code \([0-9]*\)$/\1/p' "$log" 2>/dev/null | tail -1)"
            state="exited, code ${code:-unknown}"
            [ "${code:-}" = 0 ] || failed=1
        fi
        printf '%-9s %-16s %-8s %s\n' "$role" "$host" "$pid" "$state"
        [ "$role" = god ] && god_host="$host"
    done < "$PIDS"
    echo
    if [ -s "$STATE/connection" ]; then export GOD_CONNECTION="$STATE/connection"; fi
    GOD_ADDRESS="$(cat "$STATE/address")" "$SCRIPTS/god.sh" --host "$god_host" status || true
    return "$failed"  # non-zero: a process ended with a code other than 0 (or one unknown)
}

down() {
    [ -s "$PIDS" ] || { echo "nothing to stop"; return 0; }
    local role host pid launcher log
    # Newest first: producers and consumers say goodbye before god stops.
    while read -r role host pid launcher log; do
        if alive "$host" "$pid"; then
            signal "$host" "$pid" TERM
            for _ in $(seq $((STOP_WAIT_S * 10))); do alive "$host" "$pid" || break; sleep 0.1; done
            if alive "$host" "$pid"; then
                echo "$role on $host (pid $pid) did not stop in ${STOP_WAIT_S}s: killing it"
                signal "$host" "$pid" KILL
            fi
            echo "stopped $role on $host (pid $pid)"
        fi
        kill "$launcher" 2>/dev/null || true  # an ssh whose remote command ended goes too
    done < <(tac "$PIDS")
    rm -f "$PIDS" "$STATE/connection"  # (it holds the key)
}

case "${1:-}" in
    up) shift; up "$@" ;;
    down) down ;;
    status) status ;;
    *) die "usage: cluster.sh up HOSTS_FILE | status | down" ;;
esac
