# Sourced by the scripts here: make .venv if missing and (re)install when pyproject.toml changes.
# Usage: ensure_venv [EXTRAS]   e.g. ensure_venv test
# Several scripts may start at once (a cluster on one machine): the install runs under a lock.
ensure_venv() {
    # The checkout is installed in place (-e), so its modules are compiled when imported, and a
    # run starts the roles hundreds of times: keep what is compiled, in .venv rather than beside
    # the sources, also where the environment asks not to write bytecode (PYTHONDONTWRITEBYTECODE
    # made every process compile every module of the checkout again: 0.07 s of each start).
    unset PYTHONDONTWRITEBYTECODE
    export PYTHONPYCACHEPREFIX="$PWD/.venv/pycache"
    local extras="${1:-}" python="${PYTHON:-python3}" sum spec="."
    sum="$(cksum < pyproject.toml | cut -d' ' -f1)"
    # Any install of this pyproject.toml has what the roles need; extras add to it.
    if [ -z "$extras" ] && compgen -G ".venv/.installed-$sum-*" > /dev/null; then
        return 0
    fi
    [ -f ".venv/.installed-$sum-${extras:-base}" ] && return 0
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
        echo "error: Python 3.10 or newer is needed ('$python' is $("$python" --version 2>&1 || echo missing)); set PYTHON=/path/to/python3" >&2
        exit 1
    fi
    [ -n "$extras" ] && spec=".[$extras]"
    (
        flock 9
        if [ ! -x .venv/bin/python ]; then
            echo "making .venv with $("$python" --version)" >&2
            "$python" -m venv .venv
        fi
        if [ ! -f ".venv/.installed-$sum-${extras:-base}" ]; then
            echo "installing $spec into .venv" >&2
            .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec" 2> >(grep -v "is ignored: it is neither" >&2)
            touch ".venv/.installed-$sum-${extras:-base}"
        fi
    ) 9> .venv.lock
}
