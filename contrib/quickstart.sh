#!/usr/bin/env bash
# README's quick start: mailticket in a virtual environment of its own (.venv), then its demo. The system Python of
# Debian 12 and Ubuntu 24.04 refuses `pip install` (PEP 668), so nothing is installed into it; root or not.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${MAILTICKET_VENV:-.venv}"
if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing python3-venv (Debian/Ubuntu package: the system Python's venv module)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check .
echo "installed in $VENV; later: $VENV/bin/mailticket demo"
exec "$VENV/bin/mailticket" demo "$@"
