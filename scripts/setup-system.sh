#!/usr/bin/env bash
# Installs the Debian packages the demo and the tests need (idempotent).
#   prosody, lua-unbound   the XMPP server the tests and the demo run on 127.0.0.1
#   libxml2-utils          xmllint, validates our payloads against schemas/
#   openssl                test certificates for STARTTLS
#   python3-venv           the venv holding slixmpp, the independent peer of interop tests
#   chromium, chromium-driver  the end-to-end consent test in a real browser
#   systemd                systemd-analyze verify of deploy/quoalise-agent.service
set -euo pipefail

packages=(prosody lua-unbound libxml2-utils openssl python3-venv chromium chromium-driver systemd ca-certificates curl)
if [[ "${1:-}" == "--minimal" ]]; then
  packages=(prosody lua-unbound openssl ca-certificates)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
# The Debian package may start a system-wide Prosody; ours run on their own ports, so
# it does no harm, but nothing here needs it either.
