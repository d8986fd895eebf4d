#!/usr/bin/env bash
# The README's first command: the whole job on one machine, in a temporary
# directory, stopped at the end (also on failure or Ctrl-C).
#
#   1. installs Prosody (and openssl, tzdata) if missing, builds the binaries;
#   2. starts Prosody as its own user on a free loopback port, with a throw-away
#      CA, and creates two accounts: the agent and a peer application;
#   3. starts enedis-sim (the Enedis simulator) and quoalise-agent;
#   4. asks the agent, as the peer, for the last week of load curve (the 7 Paris
#      days ending yesterday) with `quoalise-agent query … get-history`, and
#      prints the Quoalise XML and a summary;
#   5. asks for a year (17,520 half-hours, more than one XMPP stanza holds): the
#      agent answers in pages, `query` follows them and writes one csv.
#
# Usage: scripts/demo.sh [--release]      (debug build by default)
# Needs root or sudo (Prosody runs as the `prosody` user; packages may be installed).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

profile=debug
cargo_flags=()
if [[ "${1:-}" == "--release" ]]; then
  profile=release
  cargo_flags=(--release)
fi

say() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || die "run as root, or install sudo: Prosody must run as its own user"
  sudo=(sudo)
fi

say "system packages"
scripts/setup-system.sh --minimal >&2
if [[ ! -e /usr/share/zoneinfo/Europe/Paris ]]; then
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends tzdata >&2
fi
command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs) first"

say "building quoalise-agent and enedis-sim ($profile)"
build_started=$SECONDS
cargo build "${cargo_flags[@]}" --bin quoalise-agent --bin enedis-sim >&2
printf 'built in %d s\n' $((SECONDS - build_started)) >&2
agent_bin="$root/target/$profile/quoalise-agent"
sim_bin="$root/target/$profile/enedis-sim"

work=$(mktemp -d /tmp/quoalise-demo.XXXXXX)
chmod 755 "$work"
agent_pid='' sim_pid='' prosody_pid='' prosody_runner=''

# Stops what was started, newest first, and removes the directory.
cleanup() {
  local status=$?
  { set +x; } 2>/dev/null
  trap - EXIT INT TERM
  for pid in "$agent_pid" "$sim_pid"; do
    [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null || true
  done
  if [[ -n "$prosody_pid" ]]; then "${sudo[@]}" kill -TERM "$prosody_pid" 2>/dev/null || true; fi
  for pid in "$agent_pid" "$sim_pid" "$prosody_runner"; do
    [[ -n "$pid" ]] && wait "$pid" 2>/dev/null || true
  done
  if [[ $status -ne 0 ]]; then
    for log in agent.log sim.log prosody.log; do
      [[ -s "$work/$log" ]] && { printf '\n--- %s (last lines) ---\n' "$log" >&2; tail -n 20 "$work/$log" >&2; }
    done
  fi
  "${sudo[@]}" rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port nothing listens on (bash's /dev/tcp: a refused connection means free).
free_port() {
  local port
  for _ in $(seq 50); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  die "no free port found"
}

wait_port() { # port what
  for _ in $(seq 150); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  die "$2 did not listen on port $1"
}

# HTTP status of GET http://127.0.0.1:$1$2 (no curl needed).
http_status() {
  local line
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
  read -r _ line _ <&3 || true
  exec 3<&-
  echo "$line"
}

say "Prosody on 127.0.0.1 (temporary directory $work)"
xmpp_port=$(free_port)
mkdir -p "$work/prosody/data" "$work/prosody/certs"
(
  cd "$work/prosody"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
    -days 2 -subj "/CN=quoalise demo CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout leaf.key -out leaf.csr \
    -subj "/CN=localhost" 2>/dev/null
  printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > leaf.ext
  openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem -days 2 \
    -extfile leaf.ext 2>/dev/null
)
p="$work/prosody"
cat > "$p/prosody.cfg.lua" <<EOF
pidfile = "$p/prosody.pid"
data_path = "$p/data"
certificates = "$p/certs"
log = { info = "$p/prosody.log" }
interfaces = { "127.0.0.1" }
c2s_ports = { $xmpp_port }
c2s_direct_tls_ports = { }
http_ports = { }
https_ports = { }
network_settings = { nagle = false }
authentication = "internal_hashed"
storage = "internal"
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "smacks"; "posix" }
modules_disabled = { "s2s"; "offline" }
c2s_require_encryption = true
VirtualHost "localhost"
  ssl = { certificate = "$p/leaf.pem"; key = "$p/leaf.key" }
EOF
"${sudo[@]}" chown -R prosody:prosody "$p"
"${sudo[@]}" runuser -u prosody -- prosody -F --config "$p/prosody.cfg.lua" >"$work/prosody.out" 2>&1 &
prosody_runner=$!
wait_port "$xmpp_port" Prosody
for _ in $(seq 50); do
  prosody_pid=$("${sudo[@]}" cat "$p/prosody.pid" 2>/dev/null || true)
  [[ -n "$prosody_pid" ]] && break
  sleep 0.1
done
agent_password="demo-agent-$RANDOM$RANDOM"
app_password="demo-app-$RANDOM$RANDOM"
"${sudo[@]}" prosodyctl --config "$p/prosody.cfg.lua" register agent localhost "$agent_password" >&2
"${sudo[@]}" prosodyctl --config "$p/prosody.cfg.lua" register app localhost "$app_password" >&2
echo "accounts: agent@localhost, app@localhost" >&2

say "enedis-sim (Enedis Data Connect simulator)"
"$sim_bin" --listen 127.0.0.1:0 >"$work/sim.out" 2>"$work/sim.log" &
sim_pid=$!
sim_addr=''
for _ in $(seq 300); do
  sim_addr=$(sed -n 's/^listening on //p' "$work/sim.out" 2>/dev/null | head -n1)
  [[ -n "$sim_addr" ]] && break
  kill -0 "$sim_pid" 2>/dev/null || die "enedis-sim exited"
  sleep 0.1
done
[[ -n "$sim_addr" ]] || die "enedis-sim did not start"
echo "listening on $sim_addr" >&2

say "quoalise-agent"
web_port=$(free_port)
umask 077
printf '%s\n' "$agent_password" > "$work/xmpp_password"
printf '%s\n' "$app_password" > "$work/app_password"
printf 'sim-secret\n' > "$work/enedis_client_secret"
umask 022
cat > "$work/config.toml" <<EOF
[xmpp]
jid = "agent@localhost/agent"
password_file = "xmpp_password"
server = "127.0.0.1:$xmpp_port"
ca_file = "prosody/ca.pem"

[enedis]
api = "2026"
base_url = "http://$sim_addr"
authorize_url = "http://$sim_addr"
client_id = "sim-client"
client_secret_file = "enedis_client_secret"

[web]
listen = "127.0.0.1:$web_port"
public_url = "http://127.0.0.1:$web_port"

[store]
path = "agent.db"

[[peers]]
jid = "app@localhost"
usage_points = ["22516914714270"]
EOF
"$agent_bin" --config "$work/config.toml" check >&2
"$agent_bin" --config "$work/config.toml" run 2>"$work/agent.log" &
agent_pid=$!
for _ in $(seq 300); do
  [[ "$(http_status "$web_port" /healthz 2>/dev/null || true)" == 200 ]] && break
  kill -0 "$agent_pid" 2>/dev/null || die "the agent exited"
  sleep 0.1
done
[[ "$(http_status "$web_port" /healthz)" == 200 ]] || die "the agent is not healthy (see its log)"
echo "agent@localhost/agent is online; web (health, metrics) on 127.0.0.1:$web_port" >&2

# The 7 Paris days ending yesterday: [today - 7 days, today[ at Paris midnight.
today=$(TZ=Europe/Paris date +%F)
start=$(TZ=Europe/Paris date -d "$today -7 days" +%FT%T%:z)
end=$(TZ=Europe/Paris date -d "$today" +%FT%T%:z)
identifier="urn:dev:prm:22516914714270_consumption/power/active/raw"

say "the peer app@localhost asks: get-history $identifier --start $start --end $end"
set -x
"$agent_bin" query --jid app@localhost --password-file "$work/app_password" \
  --to agent@localhost/agent --server "127.0.0.1:$xmpp_port" --ca-file "$work/prosody/ca.pem" \
  get-history "$identifier" --start "$start" --end "$end" --format xml \
  >"$work/payload.xml" 2>"$work/summary.txt"
{ set +x; } 2>/dev/null
cat "$work/payload.xml"

say "summary"
cat "$work/summary.txt"
grep -m1 'quoalise_agent::request' "$work/agent.log" | sed 's/^/agent log: /' >&2 || true

# A year is larger than one XMPP stanza (about 470 KB; servers accept 256 KiB): the
# agent answers `query` in pages, which it follows and merges into one output.
year_start=$(TZ=Europe/Paris date -d "$today -365 days" +%FT%T%:z)
say "the peer asks for a year: get-history $identifier --start $year_start --end $end --format csv"
set -x
"$agent_bin" query --jid app@localhost --password-file "$work/app_password" \
  --to agent@localhost/agent --server "127.0.0.1:$xmpp_port" --ca-file "$work/prosody/ca.pem" \
  get-history "$identifier" --start "$year_start" --end "$end" --format csv \
  >"$work/year.csv" 2>"$work/year-summary.txt"
{ set +x; } 2>/dev/null
printf '%s lines of csv (header included); first and last:\n' "$(wc -l <"$work/year.csv")" >&2
sed -n '2p;$p' "$work/year.csv" >&2
cat "$work/year-summary.txt"
pages=$(grep -c 'quoalise_agent::request' "$work/agent.log" || true)
echo "the agent answered the year in $((pages - 1)) pages (one request line per page in its log)" >&2
