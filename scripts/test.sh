#!/usr/bin/env bash
# Runs the whole test suite: unit tests, property tests, and integration tests that
# start the real binaries against a real Prosody, the Enedis simulator, slixmpp peers,
# xmllint and headless Chromium on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs) first" >&2; exit 1; }
scripts/setup-system.sh
if [[ -x scripts/setup-python.sh ]]; then scripts/setup-python.sh; fi

cargo test --all-targets "$@"
