# Sourced by ./start and ./run-tests: makes .venv with tcplab installed (extras in $1).
# Works on a fresh Debian 12 as root or not: when ensurepip is missing (no
# python3-venv package) and we are not root, pip is bootstrapped from PyPI.

pick_python() {
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "tcplab: Python 3.11 or newer is needed (Debian 12: apt install python3)" >&2
    return 1
}

make_venv() {
    local py="$1"
    if "$py" -m venv .venv 2>/dev/null; then
        return 0
    fi
    rm -rf .venv
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "tcplab: installing python3-venv" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null ||
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }
        "$py" -m venv .venv && return 0
        rm -rf .venv
    fi
    # no ensurepip: a venv without pip, then pip's own wheel from PyPI installs pip
    "$py" -m venv --without-pip .venv
    .venv/bin/python - <<'PY'
import json, os, subprocess, sys, tempfile, urllib.request
meta = json.load(urllib.request.urlopen("https://pypi.org/pypi/pip/json", timeout=60))
wheel = next(f for f in meta["urls"] if f["filename"].endswith(".whl"))
path = os.path.join(tempfile.mkdtemp(), wheel["filename"])
urllib.request.urlretrieve(wheel["url"], path)
subprocess.check_call([sys.executable, os.path.join(path, "pip"), "install", "-q", path])
PY
}

ensure_venv() {
    local extras="$1"
    local py stamp want
    py=$(pick_python) || return 1
    if [ ! -x .venv/bin/python ]; then
        echo "tcplab: creating .venv (first run only)" >&2
        make_venv "$py" || { echo "tcplab: could not create .venv" >&2; return 1; }
    fi
    # the stamp records what was installed from which pyproject.toml; the test
    # extras include everything the plain install has
    stamp=.venv/.tcplab-installed
    have=$(cat "$stamp" 2>/dev/null || true)
    project=$(sha256sum <pyproject.toml | cut -d' ' -f1)
    if [ "$have" != "$project $extras" ] && [ "$have" != "$project [test]" ]; then
        echo "tcplab: installing tcplab${extras} into .venv" >&2
        .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
        if ! .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras}" >.venv/pip.log 2>&1; then
            cat .venv/pip.log >&2
            echo "tcplab: pip install failed (log above, also in .venv/pip.log)" >&2
            return 1
        fi
        echo "$project $extras" >"$stamp"
    fi
}

# What the Mininet backend needs from Debian (mnexec comes with the mininet package).
MININET_DEBIAN_PACKAGES=(mininet iproute2 nftables iptables ethtool tcpdump net-tools procps)

missing_debian_packages() {
    local pkg
    command -v dpkg-query >/dev/null 2>&1 || return 0
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || printf '%s ' "$pkg"
    done
}

# As root with apt: install the Debian packages named that are missing (one line
# says which). Not root: nothing (the caller says what is missing when it matters).
ensure_debian_packages() {
    local missing
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 0
    missing=$(missing_debian_packages "$@")
    [ -n "$missing" ] || return 0
    echo "tcplab: installing Debian packages: $missing" >&2
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1 ||
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null; }
}
