#!/usr/bin/env bash
# `make cluster`: a whole Switchboard cluster on this machine, all on 127.0.0.1.
#
#   nats1..3     NATS with JetStream, clients 4222-4224, routes 6222-6224, monitoring 8222-8224
#   control1..2  `switchboard control`, gRPC 50051-50052, both on nats1 + nats2
#   (namespace `chat` keeps history in a JetStream stream replicated on the three nodes)
#   gateway1..3  `switchboard gateway`, WebSocket 8081-8083, each on its own NATS node
#
# State and logs live in ${TMPDIR:-/tmp}/switchboard-cluster (wiped at start). Ctrl-C or
# SIGTERM stops everything (TERM, up to 10 s, then KILL): gateways first, then control, then
# NATS. Exits 1 if a process dies or never listens during start-up.
#
# Environment: SWITCHBOARD_BIN (default target/release/switchboard), NATS_SERVER (default
# nats-server from PATH, else /usr/sbin/nats-server).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${SWITCHBOARD_BIN:-$ROOT/target/release/switchboard}
DIR=${TMPDIR:-/tmp}
DIR=${DIR%/}/switchboard-cluster
START_DEADLINE=30 # seconds for each process to listen
STOP_DEADLINE=10  # seconds between TERM and KILL

NATS_CLIENT_PORTS=(4222 4223 4224)
NATS_CLUSTER_PORTS=(6222 6223 6224)
NATS_HTTP_PORTS=(8222 8223 8224)
CONTROL_PORTS=(50051 50052)
GATEWAY_PORTS=(8081 8082 8083)

say() { printf 'cluster: %s\n' "$*"; }
die() {
  printf 'cluster: %s\n' "$*" >&2
  exit 1
}

# --- what we need ----------------------------------------------------------------------------

if [[ -n ${NATS_SERVER:-} ]]; then
  NATS=$NATS_SERVER
elif NATS=$(command -v nats-server); then
  :
elif [[ -x /usr/sbin/nats-server ]]; then
  NATS=/usr/sbin/nats-server
else
  die "nats-server not found: run \`make deps\` (tests/tools/install-deps.sh)"
fi
[[ -x $BIN ]] || die "switchboard binary not found at $BIN: run \`cargo build --release -p switchboard\` or set SWITCHBOARD_BIN"
[[ $BIN == /* ]] || BIN=$PWD/$BIN

# Detach each process into its own session so that Ctrl-C reaches only this script, which
# then stops them in order. (setsid is util-linux; without it they get the Ctrl-C too.)
DETACH=()
if command -v setsid >/dev/null 2>&1; then DETACH=(setsid); fi

# nap SECONDS: sleeps in the background and waits for it with stderr silenced, so that bash
# reports a child that died meanwhile (e.g. "line 1: 1234 Killed ...") to /dev/null instead
# of the terminal; `wait PID` still gets each child's exit status.
nap() {
  sleep "$1" &
  wait $! 2>/dev/null || true
}

# True if something accepts TCP connections on 127.0.0.1:$1.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# True if 127.0.0.1:$1 greets with a NATS INFO line.
nats_greets() {
  (
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    IFS= read -r -t 2 line <&3 || exit 1
    [[ $line == INFO* ]]
  ) 2>/dev/null
}

# GET http://127.0.0.1:$1$2 (HTTP/1.0, so the server closes the connection after the body).
http_get() {
  (
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n' "$2" "$1" >&3
    timeout 3 cat <&3
  ) 2>/dev/null
}

# --- process table ---------------------------------------------------------------------------

NAMES=()
PIDS=()
ADDRS=()
LOGS=()

# start NAME ADDRESS -- COMMAND...: runs COMMAND in the background, output to $DIR/NAME.log.
start() {
  local name=$1 addr=$2 log=$DIR/$1.log
  shift 3
  "${DETACH[@]+"${DETACH[@]}"}" "$@" </dev/null >"$log" 2>&1 &
  NAMES+=("$name")
  PIDS+=("$!")
  ADDRS+=("$addr")
  LOGS+=("$log")
}

index_of() {
  local i
  for i in "${!NAMES[@]}"; do
    if [[ ${NAMES[i]} == "$1" ]]; then
      echo "$i"
      return 0
    fi
  done
  return 1
}

log_tail() {
  printf -- '--- last lines of %s ---\n' "$1" >&2
  tail -n 40 "$1" 2>/dev/null | sed 's/^/    /' >&2 || true
}

# fail_start NAME WHY: reports a start-up failure with NAME's log and exits 1 (the EXIT trap
# stops everything else).
fail_start() {
  local i
  i=$(index_of "$1")
  printf 'cluster: %s (pid %s) %s\n' "$1" "${PIDS[i]}" "$2" >&2
  log_tail "${LOGS[i]}"
  exit 1
}

# wait_until NAME WHAT COMMAND...: polls COMMAND until it succeeds; fails the start if NAME
# dies or START_DEADLINE passes first.
wait_until() {
  local name=$1 what=$2 i status deadline=$((SECONDS + START_DEADLINE))
  shift 2
  i=$(index_of "$name")
  until "$@"; do
    if ! kill -0 "${PIDS[i]}" 2>/dev/null; then
      status=0
      wait "${PIDS[i]}" 2>/dev/null || status=$?
      fail_start "$name" "exited with status $status during start-up"
    fi
    if ((SECONDS >= deadline)); then
      fail_start "$name" "did not $what within ${START_DEADLINE}s"
    fi
    nap 0.1
  done
}

# stop_pids PID...: TERM, wait up to STOP_DEADLINE seconds, then KILL; reaps them all.
stop_pids() {
  local pid waited=0 alive
  (($#)) || return 0
  kill -TERM "$@" 2>/dev/null || true
  while :; do
    alive=()
    for pid in "$@"; do
      if kill -0 "$pid" 2>/dev/null; then alive+=("$pid"); fi
    done
    ((${#alive[@]})) || break
    if ((waited >= STOP_DEADLINE * 10)); then
      say "still running after ${STOP_DEADLINE}s, killing pid ${alive[*]}"
      kill -KILL "${alive[@]}" 2>/dev/null || true
      break
    fi
    nap 0.1
    waited=$((waited + 1))
  done
  for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
}

# Stops gateways, then control replicas, then NATS. Safe to call twice.
stop_all() {
  local tier i pids
  ((${#PIDS[@]})) || return 0
  for tier in gateway control nats; do
    pids=()
    for i in "${!NAMES[@]}"; do
      if [[ ${NAMES[i]} == "$tier"* && -n ${PIDS[i]} ]]; then pids+=("${PIDS[i]}"); fi
    done
    stop_pids "${pids[@]+"${pids[@]}"}"
  done
  NAMES=() PIDS=() ADDRS=() LOGS=()
}

trap stop_all EXIT
trap 'echo; say "stopping"; stop_all; say "stopped"; exit 0' INT TERM

# --- start -----------------------------------------------------------------------------------

for port in "${NATS_CLIENT_PORTS[@]}" "${NATS_CLUSTER_PORTS[@]}" "${NATS_HTTP_PORTS[@]}" \
  "${CONTROL_PORTS[@]}" "${GATEWAY_PORTS[@]}"; do
  if listening "$port"; then
    die "port 127.0.0.1:$port is already in use (another \`make cluster\` still running?)"
  fi
done

rm -rf "$DIR"
mkdir -p "$DIR"
say "state and logs in $DIR"

for n in 1 2 3; do
  i=$((n - 1))
  routes=()
  for j in 0 1 2; do
    ((j == i)) || routes+=("nats-route://127.0.0.1:${NATS_CLUSTER_PORTS[j]}")
  done
  cat >"$DIR/nats$n.conf" <<EOF
# Written by deploy/cluster.sh.
server_name: "nats$n"
host: "127.0.0.1"
port: ${NATS_CLIENT_PORTS[i]}
http: "127.0.0.1:${NATS_HTTP_PORTS[i]}"
jetstream {
  store_dir: "$DIR/nats$n"
}
cluster {
  name: sb
  listen: "127.0.0.1:${NATS_CLUSTER_PORTS[i]}"
  routes: [
    "${routes[0]}"
    "${routes[1]}"
  ]
}
EOF
  start "nats$n" "nats://127.0.0.1:${NATS_CLIENT_PORTS[i]}" -- "$NATS" -c "$DIR/nats$n.conf"
done

routes_up() { http_get "$1" /routez | grep -Eq '"num_routes": *2[,}[:space:]]'; }
meta_leader() { http_get "$1" /jsz | grep -Eq '"leader": *"[^"]+"'; }
for n in 1 2 3; do
  wait_until "nats$n" "accept NATS clients" nats_greets "${NATS_CLIENT_PORTS[n - 1]}"
done
for n in 1 2 3; do
  wait_until "nats$n" "route to the other two nodes" routes_up "${NATS_HTTP_PORTS[n - 1]}"
done
for n in 1 2 3; do
  wait_until "nats$n" "see a JetStream meta leader" meta_leader "${NATS_HTTP_PORTS[n - 1]}"
done
say "NATS cluster up"

# Namespace `chat` keeps history, replicated on all three NATS nodes (R3): a client that
# drops resumes from its last publication, even across the loss of one node.
cat >"$DIR/switchboard.toml" <<EOF
# Written by deploy/cluster.sh.
[channels.namespaces.chat]
history_size = 1000
history_ttl = "1h"

[nats]
history_replicas = 3
EOF

for n in 1 2; do
  port=${CONTROL_PORTS[n - 1]}
  start "control$n" "grpc http://127.0.0.1:$port" -- "$BIN" control --config "$DIR/switchboard.toml" \
    --nats nats://127.0.0.1:4222,nats://127.0.0.1:4223 --grpc-listen "127.0.0.1:$port" --replica-id "control$n" \
    --allow-unauthenticated-api
done
for n in 1 2; do
  wait_until "control$n" "listen on 127.0.0.1:${CONTROL_PORTS[n - 1]}" listening "${CONTROL_PORTS[n - 1]}"
done

# Without a token secret the gateways admit anonymous sessions; with one they check tokens.
ANONYMOUS=()
[[ -n ${SWITCHBOARD_TOKEN_SECRET:-} ]] || ANONYMOUS=(--allow-anonymous)
for n in 1 2 3; do
  port=${GATEWAY_PORTS[n - 1]}
  start "gateway$n" "ws://127.0.0.1:$port/ws" -- "$BIN" gateway --config "$DIR/switchboard.toml" "${ANONYMOUS[@]}" \
    --nats "nats://127.0.0.1:${NATS_CLIENT_PORTS[n - 1]}" --listen "127.0.0.1:$port" --node-id "gateway$n"
done
for n in 1 2 3; do
  wait_until "gateway$n" "listen on 127.0.0.1:${GATEWAY_PORTS[n - 1]}" listening "${GATEWAY_PORTS[n - 1]}"
done

# --- running ---------------------------------------------------------------------------------

echo
printf '%-10s %-8s %-48s %s\n' PROCESS PID ADDRESS LOG
for i in "${!NAMES[@]}"; do
  addr=${ADDRS[i]}
  if [[ ${NAMES[i]} == nats* ]]; then
    addr="$addr (route :${NATS_CLUSTER_PORTS[i]}, http :${NATS_HTTP_PORTS[i]})"
  fi
  printf '%-10s %-8s %-48s %s\n' "${NAMES[i]}" "${PIDS[i]}" "$addr" "${LOGS[i]}"
done

show=${BIN#"$PWD"/}
[[ $show == */* ]] || show=./$show
echo
echo "Watch a message cross gateways: subscribe on gateway1 (nats1), publish through control2:"
printf '  %q sub --url ws://127.0.0.1:8081/ws chat:lobby\n' "$show"
printf "  %q pub --grpc http://127.0.0.1:50052 chat:lobby '{\"text\":\"hi\"}'\n" "$show"
echo
say "running; Ctrl-C stops the cluster"

# Report processes that die later (e.g. killed to try failover) and keep serving with the rest.
while :; do
  nap 1
  for i in "${!NAMES[@]}"; do
    [[ -n ${PIDS[i]} ]] || continue
    if ! kill -0 "${PIDS[i]}" 2>/dev/null; then
      status=0
      wait "${PIDS[i]}" 2>/dev/null || status=$?
      printf 'cluster: %s (pid %s) exited with status %s\n' "${NAMES[i]}" "${PIDS[i]}" "$status" >&2
      log_tail "${LOGS[i]}"
      PIDS[i]=""
    fi
  done
done
