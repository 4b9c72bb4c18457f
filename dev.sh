#!/usr/bin/env bash
# One entry point for a fresh machine with Python 3.11:
#   ./dev.sh up [ARGS]   installs into .venv, then `kaito up` (tiny model on embedded Ray Serve)
#   ./dev.sh test [ARGS] installs into .venv (and the test tools: registry, wrk, podman), then pytest;
#                        tests/e2e (our images under podman) runs last
#   ./dev.sh images      builds the base, hooks and runtime images (CPU torch) as the e2e tests do
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VENV:-.venv}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0   # keep every Ray listener on 127.0.0.1
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
export PIP_CONSTRAINT="$PWD/constraints.txt"  # torch 2.13.0 = the CPU build here

install() {
  local stamp="$VENV/.installed-$(cat setup.cfg constraints.txt | sha256sum | cut -c1-16)"
  [ -f "$stamp" ] && return 0
  local t0=$SECONDS
  echo "dev.sh: installing into $VENV (first run: about 2 minutes)"
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  # pip's own output goes to a log, shown only when the install fails
  local log="$VENV/install.log"
  if ! { "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip &&
         "$VENV/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[serving,tuning,dev]"
       } >"$log" 2>&1; then
    cat "$log" >&2
    echo "dev.sh: install failed (log: $log)" >&2
    return 1
  fi
  touch "$stamp"
  echo "dev.sh: installed in $((SECONDS - t0)) s; run kaito as $VENV/bin/kaito (or: source $VENV/bin/activate)"
}

system_tools() {
  # Real parts for the tests: Debian's OCI registry and wrk. Installed when we are root.
  local missing=()
  command -v docker-registry >/dev/null || [ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
  command -v wrk >/dev/null || missing+=(wrk)
  command -v htpasswd >/dev/null || missing+=(apache2-utils)
  # The container tier (tests/e2e): podman with runc (crun cannot run here), debootstrap for the base image.
  command -v podman >/dev/null || missing+=(podman)
  [ -x /usr/sbin/runc ] || missing+=(runc)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    # The Debian package starts a registry on all interfaces; tests run their own on 127.0.0.1.
    (systemctl stop docker-registry || service docker-registry stop || pkill -x docker-registry) >/dev/null 2>&1 || true
  else
    echo "dev.sh: missing ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]}" >&2
  fi
}

cmd=${1:-}
shift || true
case "$cmd" in
  up)
    install
    exec "$VENV/bin/kaito" up "$@"
    ;;
  test)
    install
    system_tools
    exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
    ;;
  images)
    install
    system_tools
    exec "$VENV/bin/python" -m tests.support.images all
    ;;
  *)
    echo "usage: ./dev.sh up [kaito up args] | ./dev.sh test [pytest args] | ./dev.sh images" >&2
    exit 2
    ;;
esac
