#!/usr/bin/env bash
# Builds the Debian package of quoalise-agent with cargo-deb (configured in
# Cargo.toml, [package.metadata.deb]), and its -dbgsym.ddeb (the stripped debug
# symbols), and prints their paths.
#
#   scripts/package.sh                       release build, then the package, in
#                                            target/debian/
#   scripts/package.sh --binary FILE --target-dir DIR [--deb-version V] [--fast]
#                                            packages an already-built binary (the
#                                            tests pass Cargo's debug build) in
#                                            DIR/debian/, without compiling
#
#   scripts/package.sh --install-tools     only installs cargo-deb if missing
#                                            (scripts/setup-system.sh runs it)
#
# Needs cargo-deb, installed here from crates.io when missing (`cargo install
# --locked`, some 3 minutes on 2 cores), and dpkg-shlibdeps (Debian's dpkg-dev),
# which works out the package's dependencies.
# Nothing is fetched besides the crates of the release build: the man pages and
# the shell completions are written by the packaged binary itself, from its clap
# definition (`quoalise-agent package-files DIR`, a hidden subcommand), and the
# installed /etc/quoalise-agent/config.toml is config/example.toml with the secrets
# read from the credentials directory instead of inline.
set -euo pipefail
caller_dir=$PWD
cd "$(dirname "$0")/.."
# FILE and DIR as given, relative to the caller's directory.
from_caller() { case "$1" in /*) echo "$1" ;; *) echo "$caller_dir/$1" ;; esac; }

# The cargo-deb that Cargo.toml's [package.metadata.deb] is written for.
CARGO_DEB_VERSION="3.8.0"
install_tools() {
  if ! cargo deb --version 2>/dev/null | grep -qx "cargo-deb $CARGO_DEB_VERSION"; then
    echo "installing cargo-deb $CARGO_DEB_VERSION" >&2
    cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION"
  fi
}

binary=""
target_dir=""
deb_args=()
while (($# > 0)); do
  case "$1" in
    --install-tools) install_tools; exit 0 ;;
    --binary) binary=$(from_caller "$2"); shift 2 ;;
    --target-dir) target_dir=$(from_caller "$2"); shift 2 ;;
    --deb-version) deb_args+=(--deb-version "$2"); shift 2 ;;
    --fast) deb_args+=(--fast); shift ;;
    *) echo "usage: $0 [--binary FILE --target-dir DIR] [--deb-version V] [--fast]" >&2; exit 2 ;;
  esac
done
install_tools
command -v dpkg-shlibdeps >/dev/null || { echo "dpkg-shlibdeps not found: apt-get install dpkg-dev" >&2; exit 1; }

if [[ -n "$binary" ]]; then
  [[ -n "$target_dir" ]] || { echo "--binary needs --target-dir (a directory of its own)" >&2; exit 2; }
  mkdir -p "$target_dir/release"
  target_dir=$(cd "$target_dir" && pwd)
  install -m 0755 "$binary" "$target_dir/release/quoalise-agent"
else
  if [[ -n "$target_dir" ]]; then
    mkdir -p "$target_dir"
    target_dir=$(cd "$target_dir" && pwd)
  else
    target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  fi
  CARGO_TARGET_DIR="$target_dir" cargo build --release --locked -p quoalise-agent --bin quoalise-agent
fi
export CARGO_TARGET_DIR="$target_dir"
files="$target_dir/release/package-files"
rm -rf "$files"

"$target_dir/release/quoalise-agent" package-files "$files" >/dev/null
# Debian policy: man pages gzip -9, without a timestamp (cargo-deb compresses only
# the man pages it does not take from the target directory).
gzip -9n "$files"/man/*.1

# The installed configuration: the example, with both secrets read from files in
# /etc/quoalise-agent/credentials (the unit's LoadCredential=) instead of inline.
sed -e '/^# This example uses inline values so that it checks on a fresh clone (git does$/,/^# not keep the 0600 mode); prefer \*_file in production\.$/c\
# As installed by the Debian package, this file reads both secrets from files in\
# /etc/quoalise-agent/credentials/ (root only: directory 0700, files 0600), which\
# the systemd unit hands to the service (LoadCredential=). To check it as root:\
#   CREDENTIALS_DIRECTORY=/etc/quoalise-agent/credentials quoalise-agent check' \
  -e '/^password = "change-me"$/d' \
  -e 's/^# password_file = "xmpp_password"$/password_file = "xmpp_password"/' \
  -e '/^client_secret = "example-client-secret"$/d' \
  -e 's/^# client_secret_file = "enedis_client_secret"$/client_secret_file = "enedis_client_secret"/' \
  config/example.toml >"$files/config.toml"
# Each edit must have applied: the example changing under it must fail here.
for line in '^password_file = "xmpp_password"$' '^client_secret_file = "enedis_client_secret"$' \
  '^# As installed by the Debian package'; do
  grep -q "$line" "$files/config.toml" || { echo "config/example.toml changed: cannot derive the installed config ($line)" >&2; exit 1; }
done
if grep -Eq '^(password|client_secret) =|fresh clone' "$files/config.toml"; then
  echo "config/example.toml changed: an inline secret is left in the installed config" >&2
  exit 1
fi

# Prints the paths of the package and of its -dbgsym.ddeb.
cargo deb --no-build --locked -p quoalise-agent --output "$target_dir/debian" "${deb_args[@]}"
