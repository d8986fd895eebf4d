#!/usr/bin/env bash
# Runs the whole test suite: unit tests, property tests, and integration tests that
# start the real binaries against a real Prosody, the Enedis simulator, slixmpp peers,
# xmllint and headless Chromium on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs) first" >&2; exit 1; }
scripts/setup-system.sh
if [[ -x scripts/setup-python.sh ]]; then scripts/setup-python.sh; fi

# The integration tests spend most of their time waiting on real servers (Prosody,
# the agent binary, the simulator, Chromium), not on the CPU: run more of them at
# once than there are cores (they pick their own ports and directories). Override
# with RUST_TEST_THREADS=N, e.g. 1 to read one test's output at a time.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-$(( $(nproc) * 4 ))}"
cargo test --all-targets "$@"
