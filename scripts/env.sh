# Shared by scripts/test and scripts/demo: make .venv with stackward and its test tools.
# Sourced, not run. On a fresh Debian machine, as root, it installs what Python needs first.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# The distribution's own Python (Debian 12: 3.11.2), not whatever `python3` comes first on PATH
# (a newer pyenv one on a developer's machine would hide what users run). STACKWARD_PYTHON
# overrides it.
PY="${STACKWARD_PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3; else PY="$(command -v python3 || true)"; fi
fi
[ -n "$PY" ] || { echo "setup: no python3; as root: apt-get install python3 python3-venv" >&2; exit 1; }

need_debs=()
"$PY" -c 'import venv, ensurepip' >/dev/null 2>&1 || need_debs+=(python3-venv)
command -v git >/dev/null || need_debs+=(git)
command -v ssh-keygen >/dev/null || need_debs+=(openssh-client)
if [ "${#need_debs[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "setup: installing ${need_debs[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq "${need_debs[@]}" >/dev/null
    else
        echo "setup: please install ${need_debs[*]} (as root: apt-get install ${need_debs[*]})" >&2
        exit 1
    fi
fi

# A venv made by another Python (another version) is made again.
want="$("$PY" -c 'import sys; print(sys.version)')"
if [ -x .venv/bin/python ] && [ "$(.venv/bin/python -c 'import sys; print(sys.version)' 2>/dev/null)" != "$want" ]; then
    echo "setup: .venv was made by another Python; making it again with $PY" >&2
    rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# Reinstall only when pyproject.toml changed since the last install.
stamp=.venv/.stackward-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
    touch "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
