#!/usr/bin/env bash
# Make sure the Python given as $1 is 3.11+ and can create virtual environments.
set -euo pipefail
py=${1:-python3}
if ! command -v "$py" >/dev/null; then
  echo "installing python3 (Debian packages)…"
  apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null
fi
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "mailflow needs Python 3.11 or newer; $py is $("$py" --version 2>&1)." >&2
  echo "Install a newer python3 or run: make PYTHON=/path/to/python3.11 install" >&2
  exit 1
}
if ! "$py" -c 'import ensurepip, venv' 2>/dev/null; then
  echo "installing python3-venv (Debian package)…"
  apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
fi
