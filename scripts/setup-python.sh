#!/usr/bin/env bash
# Creates .venv at the repository root holding slixmpp, the independent XMPP
# implementation the interop tests (tests/interop/*.py) drive against the agent.
# Idempotent: when the venv already has the pinned version, it returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."

SLIXMPP_VERSION="1.17.0"
VENV=".venv"

if [[ -x "$VENV/bin/python" ]] &&
  "$VENV/bin/python" -c "import slixmpp, sys; sys.exit(0 if slixmpp.__version__ == '$SLIXMPP_VERSION' else 1)" 2>/dev/null; then
  exit 0
fi

PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null || { echo "setup-python: $PYTHON not found (install python3 and python3-venv)" >&2; exit 1; }
if ! "$PYTHON" -m venv --help >/dev/null 2>&1; then
  echo "setup-python: '$PYTHON -m venv' is unavailable (install python3-venv)" >&2
  exit 1
fi

echo "setup-python: creating $VENV with slixmpp $SLIXMPP_VERSION"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "slixmpp==$SLIXMPP_VERSION"
"$VENV/bin/python" -c "import slixmpp; print('setup-python: slixmpp', slixmpp.__version__)"
