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
#      agent answers in pages, `query` follows them and writes one csv;
#   6. declares a consent to Enedis SGE for a professional (C4) meter and asks
#      for its 5-minute curve of yesterday, read through SGE (SOAP over mutual
#      TLS, the simulator's test CA and client certificate).
#
# Usage: scripts/demo.sh [--release] [--federated]      (debug build by default)
#   --federated  the peer lives on ANOTHER XMPP server: two Prosody servers
#                (agent.test and remote.test) federating over s2s on loopback,
#                certificates verified with the demo CA; the peer is app@remote.test.
# Needs root or sudo (Prosody runs as the `prosody` user; packages may be installed).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

profile=debug
cargo_flags=()
federated=false
for arg in "$@"; do
  case "$arg" in
    --release) profile=release; cargo_flags=(--release) ;;
    --federated) federated=true ;;
    *) echo "usage: scripts/demo.sh [--release] [--federated]" >&2; exit 2 ;;
  esac
done

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
agent_pid='' sim_pid='' prosody_pids=() prosody_runners=()

# Stops what was started, newest first, and removes the directory.
cleanup() {
  local status=$?
  { set +x; } 2>/dev/null
  trap - EXIT INT TERM
  for pid in "$agent_pid" "$sim_pid"; do
    [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${prosody_pids[@]}"; do
    "${sudo[@]}" kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "$agent_pid" "$sim_pid" "${prosody_runners[@]}"; do
    [[ -n "$pid" ]] && wait "$pid" 2>/dev/null || true
  done
  if [[ $status -ne 0 ]]; then
    for log in agent.log sim.log agent-server/prosody.log remote-server/prosody.log; do
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

# One CA for the demo; each server gets a certificate for its domain from it.
mkdir -p "$work/ca"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/ca/ca.key" \
  -out "$work/ca/ca.pem" -days 2 -subj "/CN=quoalise demo CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
ca="$work/ca/ca.pem"

if $federated; then
  agent_domain=agent.test peer_domain=remote.test
  # Each server listens for s2s on its own loopback address, port 5269; they find
  # each other through a hosts file given to Prosody's resolver (libunbound), so
  # nothing touches /etc/hosts or the network (.test is answered locally).
  agent_s2s="127.$((RANDOM % 200 + 20)).$((RANDOM % 250 + 1)).$((RANDOM % 250 + 1))"
  peer_s2s="127.$((RANDOM % 200 + 20)).$((RANDOM % 250 + 1)).$((RANDOM % 250 + 1))"
  printf '%s %s\n%s %s\n' "$agent_s2s" "$agent_domain" "$peer_s2s" "$peer_domain" > "$work/ca/hosts"
  printf 'nameserver 127.0.0.1\n' > "$work/ca/resolv.conf"
else
  agent_domain=localhost peer_domain=localhost agent_s2s='' peer_s2s=''
fi
chmod 755 "$work/ca"
chmod 644 "$ca"

# start_server NAME DOMAIN C2S_PORT [S2S_ADDRESS]: a Prosody for DOMAIN in $work/NAME.
start_server() {
  local name=$1 domain=$2 port=$3 s2s_address=${4:-} s2s pid=''
  local p="$work/$name"
  mkdir -p "$p/data" "$p/certs"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$p/leaf.key" \
    -out "$p/leaf.csr" -subj "/CN=$domain" 2>/dev/null
  printf 'subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n' \
    "$domain" > "$p/leaf.ext"
  openssl x509 -req -in "$p/leaf.csr" -CA "$ca" -CAkey "$work/ca/ca.key" \
    -set_serial "$RANDOM$RANDOM" -out "$p/leaf.pem" -days 2 -extfile "$p/leaf.ext" 2>/dev/null
  if [[ -n "$s2s_address" ]]; then
    # Certificates only (no dialback): federation is TLS with the demo CA or nothing.
    s2s="s2s_interfaces = { \"$s2s_address\" }
s2s_ports = { 5269 }
s2s_direct_tls_ports = { }
s2s_require_encryption = true
s2s_secure_auth = true
unbound = { hoststxt = \"$work/ca/hosts\"; resolvconf = \"$work/ca/resolv.conf\" }
ssl = { cafile = \"$ca\" }
modules_disabled = { \"dialback\" }"
  else
    s2s='modules_disabled = { "s2s"; "offline" }'
  fi
  cat > "$p/prosody.cfg.lua" <<EOF
pidfile = "$p/prosody.pid"
data_path = "$p/data"
certificates = "$p/certs"
log = { info = "$p/prosody.log" }
interfaces = { "127.0.0.1" }
c2s_ports = { $port }
c2s_direct_tls_ports = { }
http_ports = { }
https_ports = { }
network_settings = { nagle = false }
authentication = "internal_hashed"
storage = "internal"
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "smacks"; "posix" }
$s2s
c2s_require_encryption = true
VirtualHost "$domain"
  ssl = { certificate = "$p/leaf.pem"; key = "$p/leaf.key" }
EOF
  "${sudo[@]}" chown -R prosody:prosody "$p"
  "${sudo[@]}" runuser -u prosody -- prosody -F --config "$p/prosody.cfg.lua" >"$p/prosody.out" 2>&1 &
  prosody_runners+=($!)
  wait_port "$port" "Prosody ($domain)"
  for _ in $(seq 50); do
    pid=$("${sudo[@]}" cat "$p/prosody.pid" 2>/dev/null || true)
    [[ -n "$pid" ]] && break
    sleep 0.1
  done
  prosody_pids+=("$pid")
}

xmpp_port=$(free_port)
if $federated; then
  peer_port=$(free_port)
  say "two Prosody servers federating on loopback: $agent_domain (c2s $xmpp_port, s2s $agent_s2s:5269) and $peer_domain (c2s $peer_port, s2s $peer_s2s:5269); temporary directory $work"
  start_server agent-server "$agent_domain" "$xmpp_port" "$agent_s2s"
  start_server remote-server "$peer_domain" "$peer_port" "$peer_s2s"
  peer_cfg="$work/remote-server/prosody.cfg.lua"
else
  say "Prosody on 127.0.0.1 (temporary directory $work)"
  start_server agent-server localhost "$xmpp_port"
  peer_port=$xmpp_port
  peer_cfg="$work/agent-server/prosody.cfg.lua"
fi
agent_password="demo-agent-$RANDOM$RANDOM"
app_password="demo-app-$RANDOM$RANDOM"
"${sudo[@]}" prosodyctl --config "$work/agent-server/prosody.cfg.lua" register agent "$agent_domain" "$agent_password" >&2
"${sudo[@]}" prosodyctl --config "$peer_cfg" register app "$peer_domain" "$app_password" >&2
echo "accounts: agent@$agent_domain, app@$peer_domain" >&2

say "enedis-sim (Enedis Data Connect and SGE simulator)"
"$sim_bin" --listen 127.0.0.1:0 --sge-listen 127.0.0.1:0 --sge-tls-dir "$work/sge-tls" \
  >"$work/sim.out" 2>"$work/sim.log" &
sim_pid=$!
sim_addr=''
for _ in $(seq 300); do
  sim_addr=$(sed -n 's/^listening on //p' "$work/sim.out" 2>/dev/null | head -n1)
  [[ -n "$sim_addr" ]] && break
  kill -0 "$sim_pid" 2>/dev/null || die "enedis-sim exited"
  sleep 0.1
done
[[ -n "$sim_addr" ]] || die "enedis-sim did not start"
sge_addr=''
for _ in $(seq 100); do
  sge_addr=$(sed -n 's/^sge listening on //p' "$work/sim.out" 2>/dev/null | head -n1)
  [[ -n "$sge_addr" ]] && break
  sleep 0.1
done
[[ -n "$sge_addr" ]] || die "enedis-sim did not start its SGE listener"
echo "listening on $sim_addr (Data Connect), $sge_addr (SGE, mutual TLS)" >&2

say "quoalise-agent"
web_port=$(free_port)
umask 077
printf '%s\n' "$agent_password" > "$work/xmpp_password"
printf '%s\n' "$app_password" > "$work/app_password"
printf 'sim-secret\n' > "$work/enedis_client_secret"
umask 022
cat > "$work/config.toml" <<EOF
[xmpp]
jid = "agent@$agent_domain/agent"
password_file = "xmpp_password"
server = "127.0.0.1:$xmpp_port"
ca_file = "ca/ca.pem"

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

[sge]
endpoint = "https://$sge_addr"
certificate_file = "sge-tls/agent.pem"
key_file = "sge-tls/agent.key"
ca_file = "sge-tls/ca.pem"
login = "demo@agent.test"
contract_id = "1234567"

[[peers]]
jid = "app@$peer_domain"
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
echo "agent@$agent_domain/agent is online; web (health, metrics) on 127.0.0.1:$web_port" >&2

# The 7 Paris days ending yesterday: [today - 7 days, today[ at Paris midnight.
today=$(TZ=Europe/Paris date +%F)
start=$(TZ=Europe/Paris date -d "$today -7 days" +%FT%T%:z)
end=$(TZ=Europe/Paris date -d "$today" +%FT%T%:z)
identifier="urn:dev:prm:22516914714270_consumption/power/active/raw"

say "the peer app@$peer_domain asks: get-history $identifier --start $start --end $end"
set -x
"$agent_bin" query --jid "app@$peer_domain" --password-file "$work/app_password" \
  --to "agent@$agent_domain/agent" --server "127.0.0.1:$peer_port" --ca-file "$ca" \
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
"$agent_bin" query --jid "app@$peer_domain" --password-file "$work/app_password" \
  --to "agent@$agent_domain/agent" --server "127.0.0.1:$peer_port" --ca-file "$ca" \
  get-history "$identifier" --start "$year_start" --end "$end" --format csv \
  >"$work/year.csv" 2>"$work/year-summary.txt"
{ set +x; } 2>/dev/null
printf '%s lines of csv (header included); first and last:\n' "$(wc -l <"$work/year.csv")" >&2
sed -n '2p;$p' "$work/year.csv" >&2
cat "$work/year-summary.txt"
pages=$(grep -c 'quoalise_agent::request' "$work/agent.log" || true)
echo "the agent answered the year in $((pages - 1)) pages (one request line per page in its log)" >&2

# Enedis SGE: the operator declares the consent a company signed for its C4 meter,
# then the peer asks for yesterday's 5-minute curve, which the agent reads over SOAP.
c4=30001642617347
yesterday=$(TZ=Europe/Paris date -d "$today -1 day" +%FT%T%:z)
say "the operator declares a consent to Enedis SGE for the C4 meter $c4"
"$agent_bin" --config "$work/config.toml" consents add --upstream sge --owner "app@$peer_domain" \
  --prm "$c4" --company "Boulangerie Martin SARL" --mandate "MANDAT-DEMO-1" --duration P1Y >&2
say "the peer asks: get-history urn:dev:prm:${c4}_consumption/power/active/raw (yesterday, through SGE)"
set -x
"$agent_bin" query --jid "app@$peer_domain" --password-file "$work/app_password" \
  --to "agent@$agent_domain/agent" --server "127.0.0.1:$peer_port" --ca-file "$ca" \
  get-history "urn:dev:prm:${c4}_consumption/power/active/raw" --start "$yesterday" --end "$end" \
  --format csv >"$work/sge.csv" 2>"$work/sge-summary.txt"
{ set +x; } 2>/dev/null
printf '%s lines of csv (header included); first and last:\n' "$(wc -l <"$work/sge.csv")" >&2
sed -n '2p;$p' "$work/sge.csv" >&2
cat "$work/sge-summary.txt"
