#!/usr/bin/env bash
# Submit N consumers to Slurm as one job array: each array task is one consumer.
#
#   scripts/slurm-consumers.sh N [SBATCH OPTIONS...] [-- CONSUMER OPTIONS...]
#   scripts/slurm-consumers.sh 20 --time=4:00:00 --cpus-per-task=8 -- --processes 8 --burst
#
# Or follow the backlog: run beside god until Ctrl-C, submitting consumer jobs as god's queues
# want them (up to MAX; MIN stay up), each exiting once idle (consumer/adapt.py says how):
#
#   scripts/slurm-consumers.sh --adapt 0:20 --time=4:00:00 --cpus-per-task=8 -- --processes 8
#
# Each job runs `consumer` with the consumer options: long-running (it serves until its time
# limit, or a scancel), or with --burst (it exits 0 once the queues are empty, and its slot is
# free). God's address and key come from the environment at submit time, as sbatch passes it
# on: GOD_CONNECTION, god's connection file (a 0600 file the jobs can read, on a shared file
# system: god's address, key and certificate; what a god beyond its machine needs, as it
# speaks TLS), or GOD_ADDRESS and GOD_AUTHKEY_FILE or GOD_AUTHKEY (then the key is in the
# job's stored environment, which slurmctld keeps for root and you). Never put the key in the
# options: they show in squeue and sacct.
#
# Stopping: a job gets SIGTERM at `--signal` before its time limit (default here: B:TERM@120,
# two minutes ahead, to the consumer itself), and from a scancel; the consumer then finishes
# the tasks it runs and hands back the rest. Give --signal more than your longest task; Slurm
# kills what still runs KillWait seconds after a scancel, and god serves those tasks again
# after its --lease-timeout, so nothing is lost either way.
#
# GOD_CONSUMER: the consumer command on the compute nodes (words; default: `consumer` if it is
# on PATH here, the installed command, else this checkout's scripts/consumer.sh, which needs
# the checkout at the same path there). Prints sbatch's "Submitted batch job ID".
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
me="slurm-consumers.sh"

# --adapt MIN:MAX: follow the backlog instead (consumer/adapt.py), submitting through this script.
if [ "${1:-}" = "--adapt" ]; then
    shift
    if ! command -v sbatch > /dev/null || ! command -v squeue > /dev/null; then
        echo "$me: sbatch and squeue are not on PATH: run this where Slurm's commands are" >&2
        exit 3
    fi
    python="${GOD_PYTHON:-}"
    if [ -z "$python" ]; then
        if [ -x "$REPO/.venv/bin/python" ]; then python="$REPO/.venv/bin/python"; else python=python3; fi
    fi
    export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
    exec "$python" -m consumer.adapt "$@"
fi

if [ $# -lt 1 ] || ! [[ "$1" =~ ^[1-9][0-9]*$ ]]; then
    echo "$me: the first argument must be how many consumers to submit, a whole number from 1 (got '${1:-}'); usage: $me N [SBATCH OPTIONS] [-- CONSUMER OPTIONS], or $me --adapt MIN:MAX [SBATCH OPTIONS] -- --processes N [CONSUMER OPTIONS]" >&2
    exit 2
fi
n="$1"
shift
sbatch_options=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    sbatch_options+=("$1")
    shift
done
[ $# -gt 0 ] && shift  # the --
if ! command -v sbatch > /dev/null; then
    echo "$me: sbatch is not on PATH: run this where Slurm's commands are" >&2
    exit 3
fi
if [ -n "${GOD_CONNECTION:-}" ]; then
    case "$GOD_CONNECTION" in
        "{"*) ;;  # the connection itself: it sits in the job's stored environment, as GOD_AUTHKEY would
        *) [ -r "$GOD_CONNECTION" ] || { echo "$me: GOD_CONNECTION $GOD_CONNECTION is not a readable file" >&2; exit 3; } ;;
    esac
else
    if [ -z "${GOD_ADDRESS:-}" ]; then
        echo "$me: neither GOD_CONNECTION nor GOD_ADDRESS is set: the jobs must be told where god listens (god's connection file, or HOST:PORT reachable from the compute nodes)" >&2
        exit 3
    fi
    if [ -z "${GOD_AUTHKEY_FILE:-}" ] && [ -z "${GOD_AUTHKEY:-}" ]; then
        echo "$me: neither GOD_CONNECTION, GOD_AUTHKEY_FILE nor GOD_AUTHKEY is set: the jobs need god's key" >&2
        exit 3
    fi
fi
if [ -n "${GOD_CONSUMER:-}" ]; then
    read -r -a consumer <<< "$GOD_CONSUMER"
elif command -v consumer > /dev/null; then
    consumer=("$(command -v consumer)")
else
    consumer=("$REPO/scripts/consumer.sh")
fi
signal_given=false
for option in ${sbatch_options[@]+"${sbatch_options[@]}"}; do
    case "$option" in --signal|--signal=*) signal_given=true ;; esac
done
$signal_given || sbatch_options+=("--signal=B:TERM@120")

# The job script: exec, so that the consumer is the batch shell that --signal=B: reaches.
command_line="$(printf '%q ' "${consumer[@]}" "$@")"
sbatch --parsable --array="0-$((n - 1))" --job-name=god-consumer ${sbatch_options[@]+"${sbatch_options[@]}"} <<EOF |
#!/bin/bash
exec $command_line
EOF
    sed 's/^\([0-9]*\).*/Submitted batch job \1/'
