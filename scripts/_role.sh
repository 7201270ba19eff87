# Sourced by god.sh, producer.sh and consumer.sh: start one role here, or on another host.
#
#   scripts/ROLE.sh [--host HOST] [ARGS...]
#
# Here (no --host, or --host local): make .venv if needed, then exec the role, so signals
# reach Python. On HOST: run this same script there, through the remote-exec command
# GOD_REMOTE, a template in which {host} is replaced (default: 'ssh {host}'; for network
# namespaces: 'ip netns exec {host} sh -c'). The command string is its last argument.
# The repository must be at the same path there, or at GOD_REMOTE_DIR.
#
# The authkey never goes on a command line (it would show in ps): it is sent on the remote
# command's stdin, within god's connection (GOD_CONNECTION: a file, or the value) if given,
# else read from GOD_AUTHKEY or the file GOD_AUTHKEY_FILE names. GOD_ADDRESS, the GOD_TLS_*
# paths and GOD_INSECURE_PLAIN_TCP are passed along. With GOD_SHOW_PID set, the role's side (here or there)
# prints 'remote pid N' to stderr first, so cluster.sh can stop the process it started.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# What a remote role gets on stdin: god's connection (one line of JSON) from GOD_CONNECTION (a
# file, or the value itself), else the authkey from GOD_AUTHKEY or the file GOD_AUTHKEY_FILE.
_secret_line() {
    if [ -n "${GOD_CONNECTION:-}" ]; then
        case "$GOD_CONNECTION" in
            "{"*) printf '%s\n' "$GOD_CONNECTION" ;;
            *) tr -d '\n' < "$GOD_CONNECTION"; echo ;;
        esac
    elif [ -n "${GOD_AUTHKEY:-}" ]; then
        printf '%s\n' "$GOD_AUTHKEY"
    elif [ -n "${GOD_AUTHKEY_FILE:-}" ]; then
        tr -d '\n' < "$GOD_AUTHKEY_FILE"; echo
    else
        echo  # none: the role there uses its own (god's generated key file on that machine)
    fi
}

# remote_prefix HOST: the remote-exec command for HOST, as words in the array REMOTE_PREFIX.
remote_prefix() {
    local template="${GOD_REMOTE:-ssh {host\}}"
    read -r -a REMOTE_PREFIX <<< "${template//\{host\}/$1}"
}

# remote_command HOST CMD: run a shell command string on HOST (stdin from /dev/null).
remote_command() {
    remote_prefix "$1"
    "${REMOTE_PREFIX[@]}" "$2" < /dev/null
}

run_role() {
    local role="$1" host=""
    shift
    if [ "${1:-}" = "--host" ]; then
        host="${2:?--host needs a host name}"
        shift 2
    fi
    if [ -z "$host" ] || [ "$host" = "local" ]; then
        cd "$REPO"
        source scripts/_venv.sh
        ensure_venv
        if [ -n "${GOD_SHOW_PID:-}" ]; then echo "remote pid $$" >&2; fi  # the role is this process, after exec
        exec .venv/bin/python -m "$role" "$@"
    fi
    local dir="${GOD_REMOTE_DIR:-$REPO}" cmd var arg
    cmd=''
    if [ -n "${GOD_SHOW_PID:-}" ]; then cmd='echo "remote pid $$" >&2; '; fi
    cmd+='IFS= read -r GOD_SECRET || true; unset GOD_AUTHKEY GOD_CONNECTION; case "$GOD_SECRET" in'
    cmd+=' "{"*) export GOD_CONNECTION="$GOD_SECRET" ;; ?*) export GOD_AUTHKEY="$GOD_SECRET" ;; esac; unset GOD_SECRET;'
    for var in GOD_ADDRESS GOD_TLS_CERT GOD_TLS_KEY GOD_TLS_CA GOD_INSECURE_PLAIN_TCP; do
        if [ -n "${!var:-}" ]; then cmd+=" export $var=$(printf %q "${!var}");"; fi
    done
    cmd+=" cd $(printf %q "$dir") && exec scripts/$role.sh"
    for arg in "$@"; do cmd+=" $(printf %q "$arg")"; done
    # exec, with the key on a pipe (not a file, not an argument): signals reach the remote-exec command.
    remote_prefix "$host"
    exec "${REMOTE_PREFIX[@]}" "$cmd" < <(_secret_line)
}
