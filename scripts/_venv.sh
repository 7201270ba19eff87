# Sourced by demo.sh and test.sh: make .venv if missing and (re)install when pyproject.toml changes.
# Usage: ensure_venv [EXTRAS]   e.g. ensure_venv test
ensure_venv() {
    local extras="${1:-}" python="${PYTHON:-python3}"
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
        echo "error: Python 3.10 or newer is needed ('$python' is $("$python" --version 2>&1 || echo missing)); set PYTHON=/path/to/python3" >&2
        exit 1
    fi
    if [ ! -x .venv/bin/python ]; then
        echo "making .venv with $("$python" --version)" >&2
        "$python" -m venv .venv
    fi
    local spec="." stamp
    [ -n "$extras" ] && spec=".[$extras]"
    stamp=".venv/.installed-$(cat pyproject.toml | cksum | cut -d' ' -f1)-${extras:-base}"
    if [ ! -f "$stamp" ]; then
        echo "installing $spec into .venv" >&2
        .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec" 2> >(grep -v "is ignored: it is neither" >&2)
        touch "$stamp"
    fi
}
