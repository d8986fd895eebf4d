#!/usr/bin/env bash
# Installs the Debian packages the demo and the tests need (idempotent).
#   prosody, lua-unbound   the XMPP server the tests and the demo run on 127.0.0.1
#                          (Prosody 0.12 from bookworm); lua-unbound resolves the
#                          other server of the federation tests through a per-test
#                          hosts file (tests/common/federation.rs)
#   lua5.4 lua-*, libicu72 what Prosody 13 (below) needs; the same libraries 0.12 uses
#   libxml2-utils          xmllint, validates our payloads against schemas/
#   openssl                test certificates for STARTTLS and s2s
#   python3-venv           the venv holding slixmpp, the independent peer of interop tests
#   chromium, chromium-driver  the end-to-end consent test in a real browser
#   systemd                systemd-analyze verify of deploy/quoalise-agent.service
#   postgresql             the PostgreSQL store's tests: each test binary starts its
#                          own server as the postgres user (tests/common/postgres.rs);
#                          the package's own cluster is not used
#   dpkg-dev, fakeroot, man-db  the Debian package test (tests/operations/deb_package.rs):
#                          dpkg-shlibdeps for its Depends, dpkg without root, man -l
#
# cargo-deb (crates.io, `cargo install --locked`, about 3 minutes on 2 cores) builds
# the Debian package; scripts/package.sh --install-tools installs the version it
# is written for, unless already there.
#
# Prosody 13 (bookworm-backports), NEXT TO 0.12, never instead of it: the federation
# tests run 0.12 <-> 13 and check 13's XEP-0478 stream limits. The backports list is
# added with an apt pin of 1, so nothing is ever installed or upgraded from it; the
# .deb is only downloaded and unpacked (dpkg -x) into /opt/prosody-13, whose
# launchers /opt/prosody-13/bin/prosody and /opt/prosody-13/bin/prosodyctl point at
# that tree. It is not a Debian package on this machine: `dpkg -l prosody` still
# says 0.12. Override the directory with PROSODY13_DIR (the tests read it too).
set -euo pipefail

packages=(prosody lua-unbound lua5.4 lua-bitop lua-expat lua-filesystem lua-sec lua-socket libicu72 libxml2-utils openssl python3-venv chromium chromium-driver systemd ca-certificates curl dpkg-dev fakeroot man-db postgresql)
if [[ "${1:-}" == "--minimal" ]]; then
  packages=(prosody lua-unbound lua5.4 lua-bitop lua-expat lua-filesystem lua-sec lua-socket libicu72 openssl ca-certificates)
fi
# Whatever 13.x bookworm-backports has (13.0.1-1~bpo12+1 when this was written;
# the archive keeps only the latest, so no exact version is pinned).
PROSODY13_SERIES="13."
PROSODY13_DIR="${PROSODY13_DIR:-/opt/prosody-13}"

if [[ "${1:-}" != "--minimal" ]]; then
  "$(dirname "$0")/package.sh" --install-tools
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
prosody13_ok() {
  [[ -x "$PROSODY13_DIR/bin/prosody" && -x "$PROSODY13_DIR/bin/prosodyctl" ]] &&
    [[ "$(cat "$PROSODY13_DIR/VERSION" 2>/dev/null)" == "$PROSODY13_SERIES"* ]]
}
if ((${#missing[@]} == 0)) && prosody13_ok; then
  exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${missing[*]} prosody-13" >&2; exit 1; }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
updated=0
if ((${#missing[@]} > 0)); then
  echo "installing: ${missing[*]}"
  "${sudo[@]}" apt-get update -q
  updated=1
  "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
  # The Debian package may start a system-wide Prosody; ours run on their own ports,
  # so it does no harm, but nothing here needs it either.
fi

if ! prosody13_ok; then
  echo "installing Prosody ${PROSODY13_SERIES}x (bookworm-backports) into $PROSODY13_DIR"
  list=/etc/apt/sources.list.d/bookworm-backports.list
  pin=/etc/apt/preferences.d/bookworm-backports
  if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "deb http://deb.debian.org/debian bookworm-backports main" | "${sudo[@]}" tee "$list" >/dev/null
    updated=0
  fi
  if [[ ! -f "$pin" ]]; then
    printf 'Package: *\nPin: release n=bookworm-backports\nPin-Priority: 1\n' | "${sudo[@]}" tee "$pin" >/dev/null
  fi
  if ((updated == 0)); then
    "${sudo[@]}" apt-get update -q
  fi
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  chmod 777 "$work" # apt downloads as _apt
  (cd "$work" && "${sudo[@]}" apt-get download -q prosody/bookworm-backports)
  version=$(dpkg-deb -f "$work"/prosody_*.deb Version)
  [[ "$version" == "$PROSODY13_SERIES"* ]] || { echo "bookworm-backports has prosody $version, not ${PROSODY13_SERIES}x" >&2; exit 1; }
  "${sudo[@]}" rm -rf "$PROSODY13_DIR.new"
  "${sudo[@]}" mkdir -p "$PROSODY13_DIR.new/bin"
  "${sudo[@]}" dpkg -x "$work"/prosody_*.deb "$PROSODY13_DIR.new"
  # The launchers hard-code Debian's paths: point copies at this tree. The tests
  # always pass --config, so CFG_CONFIGDIR only matters for prosodyctl's defaults.
  for tool in prosody prosodyctl; do
    "${sudo[@]}" sed \
      -e "s|^CFG_SOURCEDIR=.*|CFG_SOURCEDIR='$PROSODY13_DIR/usr/lib/prosody';|" \
      -e "s|^CFG_CONFIGDIR=.*|CFG_CONFIGDIR='$PROSODY13_DIR/etc/prosody';|" \
      -e "s|^CFG_PLUGINDIR=.*|CFG_PLUGINDIR='$PROSODY13_DIR/usr/lib/prosody/modules/';|" \
      "$PROSODY13_DIR.new/usr/bin/$tool" | "${sudo[@]}" tee "$PROSODY13_DIR.new/bin/$tool" >/dev/null
    "${sudo[@]}" chmod 755 "$PROSODY13_DIR.new/bin/$tool"
  done
  # Debian's stock config includes conf.d (not shipped in the .deb: the postinst makes it).
  "${sudo[@]}" mkdir -p "$PROSODY13_DIR.new/etc/prosody/conf.d"
  echo "$version" | "${sudo[@]}" tee "$PROSODY13_DIR.new/VERSION" >/dev/null
  "${sudo[@]}" rm -rf "$PROSODY13_DIR"
  "${sudo[@]}" mv "$PROSODY13_DIR.new" "$PROSODY13_DIR"
  "${sudo[@]}" "$PROSODY13_DIR/bin/prosodyctl" about | grep -E "^Prosody [0-9]"
fi
