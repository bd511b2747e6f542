#!/usr/bin/env bash
# The scale run of issue 4 (item 4): idle subscribed connections across several gateway
# processes, the way a cluster scales. No process here may hold more than ~19.9k sockets (a
# hard open-files limit of 20,000), so: one nats-server, one `switchboard control`, GATEWAYS
# `switchboard gateway` processes (each at most PER connections), and one `switchboard bench
# idle` generator per gateway (PER connections spread over source addresses 127.0.0.1..SOURCES).
#
# Generators start one after another (a ramp): the next one starts once the previous gateway
# holds its PER connections, or has gained nothing for STALL seconds, or WAVE seconds passed.
# The ramp stops early at the first wave that falls short (that is the ceiling). Then, after
# SETTLE seconds, it reads every gateway's VmRSS (read right after start as well), counts
# established sockets per gateway with `ss`, and records memory and load; the generators then
# end their hold and write their JSON reports. Every process it started is killed on exit.
#
#   bench/scale.sh                                 # 6 gateways x 17,000 = 102,000 connections
#   GATEWAYS=8 PER=17500 bench/scale.sh            # aim higher
#
# Environment: GATEWAYS (6), PER (17000), SOURCES (8), WAVE (40 s, bound per generator's ramp),
# STALL (10 s), SETTLE (5 s), HOLD_MAX (300 s, bound on a generator's whole life), BIN
# (target/release/switchboard), OUT (bench/results/scale-DATE), PIN (1: servers on CPU 0,
# generators on CPU 1; 0: no pinning), REPORTS (1: wait for the generators to end their hold and
# write their JSON reports; 0: stop everything right after the measurement), WIDE_PORTS (0; 1 runs
# `sysctl -w net.ipv4.ip_local_port_range="1024 65535"`, only needed with few sources).
# Writes OUT/summary.txt and OUT/summary.json. Needs nats-server, ss, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

GATEWAYS=${GATEWAYS:-6}
PER=${PER:-17000}
SOURCES=${SOURCES:-8}
WAVE=${WAVE:-40}
STALL=${STALL:-10}
SETTLE=${SETTLE:-5}
HOLD_MAX=${HOLD_MAX:-300}
PIN=${PIN:-1}
REPORTS=${REPORTS:-1}
WIDE_PORTS=${WIDE_PORTS:-0}
BIN=${BIN:-$ROOT/target/release/switchboard}
OUT=${OUT:-$ROOT/bench/results/scale-$(date -u +%Y%m%d-%H%M%S)}
MAXCONN=$((PER + 1000))

((PER <= 19000)) || { echo "PER=$PER: one process holds at most ~19.9k sockets; keep PER <= 19000" >&2; exit 2; }
[[ -x $BIN ]] || { echo "$BIN is not built: cargo build --release -p switchboard" >&2; exit 2; }
command -v nats-server >/dev/null || { echo "nats-server is missing: make deps" >&2; exit 2; }
mkdir -p "$OUT"

SERVER_PIN=() GEN_PIN=()
if ((PIN)) && (($(nproc) >= 2)); then SERVER_PIN=(taskset -c 0) GEN_PIN=(taskset -c 1); fi

PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 1
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # port pid
  local i
  for ((i = 0; i < 200; i++)); do
    kill -0 "$2" 2>/dev/null || { echo "process $2 exited before listening on $1" >&2; exit 1; }
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1 after 20 s" >&2; exit 1
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
established() { ss -Htn state established "( sport = :$1 )" 2>/dev/null | wc -l; }
# Established sockets per local port, one scan for every gateway: "PORT COUNT" lines.
established_by_port() { ss -Htn state established 2>/dev/null | awk '{n = split($3, a, ":"); c[a[n]]++} END {for (p in c) print p, c[p]}'; }
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/summary.txt" >&2; }
t0=$(date +%s)
elapsed() { echo $(($(date +%s) - t0)); }

if ((WIDE_PORTS)); then
  log "sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\" (was: $(sysctl -n net.ipv4.ip_local_port_range))"
  sysctl -w net.ipv4.ip_local_port_range="1024 65535" >/dev/null
fi
log "scale run: $GATEWAYS gateways x $PER connections, $SOURCES sources, pinning ${SERVER_PIN[*]:-none} / ${GEN_PIN[*]:-none}, commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo -dirty)"
log "machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), open files soft/hard $(ulimit -Sn)/$(ulimit -Hn), ephemeral ports $(sysctl -n net.ipv4.ip_local_port_range | tr '\t' '-')"
mem_used() { awk '/MemTotal/ {t=$2} /MemAvailable/ {a=$2} END {printf "%.2f", (t-a)/1048576}' /proc/meminfo; }
log "memory in use before: $(mem_used) GiB"

# NATS.
NATS_PORT=$(free_port)
cat >"$OUT/nats.conf" <<EOF
listen: "127.0.0.1:$NATS_PORT"
max_payload: 1MB
max_pending: 256MB
EOF
"${SERVER_PIN[@]}" nats-server -c "$OUT/nats.conf" >"$OUT/nats.log" 2>&1 &
NATS_PID=$!; PIDS+=("$NATS_PID")
wait_port "$NATS_PORT" "$NATS_PID"
NATS_URL=nats://127.0.0.1:$NATS_PORT

# Control.
GRPC_PORT=$(free_port)
"${SERVER_PIN[@]}" "$BIN" control --nats "$NATS_URL" --grpc-listen "127.0.0.1:$GRPC_PORT" --replica-id c1 \
  --allow-unauthenticated-api --log warn >"$OUT/control.log" 2>&1 &
CONTROL_PID=$!; PIDS+=("$CONTROL_PID")
wait_port "$GRPC_PORT" "$CONTROL_PID"

# Gateways. The limits per client address would refuse generators that come from SOURCES
# addresses only.
NO_CLIENT_LIMITS=(--max-connections-per-ip 0 --connect-rate-per-ip 0 --max-messages-per-sec 0 --max-bytes-per-sec 0)
GW_PID=() GW_PORT=() GW_RSS0=()
for ((i = 1; i <= GATEWAYS; i++)); do
  port=$(free_port)
  "${SERVER_PIN[@]}" "$BIN" gateway --allow-anonymous --nats "$NATS_URL" --listen "127.0.0.1:$port" --node-id "g$i" \
    --max-connections "$MAXCONN" "${NO_CLIENT_LIMITS[@]}" --log warn >"$OUT/gateway-g$i.log" 2>&1 &
  GW_PID+=($!); GW_PORT+=("$port"); PIDS+=($!)
done
for ((i = 0; i < GATEWAYS; i++)); do wait_port "${GW_PORT[i]}" "${GW_PID[i]}"; done
sleep 1.5 # heartbeats reach control; the gateways' heaps settle
for ((i = 0; i < GATEWAYS; i++)); do GW_RSS0+=("$(rss_kib "${GW_PID[i]}")"); done
NATS_RSS0=$(rss_kib "$NATS_PID") CONTROL_RSS0=$(rss_kib "$CONTROL_PID")
log "started nats-server (pid $NATS_PID), control (pid $CONTROL_PID), gateways on ports ${GW_PORT[*]}; gateway VmRSS before: ${GW_RSS0[*]} KiB"
log "commands: ${SERVER_PIN[*]} nats-server -c nats.conf; ${SERVER_PIN[*]} switchboard control --nats $NATS_URL --grpc-listen 127.0.0.1:$GRPC_PORT --replica-id c1 --allow-unauthenticated-api --log warn"
log "          ${SERVER_PIN[*]} switchboard gateway --allow-anonymous --nats $NATS_URL --listen 127.0.0.1:PORT --node-id gI --max-connections $MAXCONN ${NO_CLIENT_LIMITS[*]} --log warn"

# Generators, one per gateway, in turn.
GEN_PID=() WAVE_REACHED=() WAVE_SECONDS=()
ceiling=""
for ((i = 0; i < GATEWAYS; i++)); do
  hold=$((HOLD_MAX - $(elapsed) - 20))
  # Every generator's hold ends near t0 + HOLD_MAX - 20 s. The last one may take WAVE s to
  # connect, and the settle and the measurement (one socket scan, a few seconds at 500k)
  # must end before the first hold does: hence the 75 s.
  ((hold > 75)) || { ceiling="time bound HOLD_MAX=$HOLD_MAX s reached before generator $((i + 1))"; break; }
  "${GEN_PIN[@]}" "$BIN" bench idle --url "ws://127.0.0.1:${GW_PORT[i]}/ws" --server-pid "${GW_PID[i]}" \
    --subscribers "$PER" --sources "$SOURCES" --duration "${hold}s" --label "gateway-g$((i + 1))" \
    --json "$OUT/gen-g$((i + 1)).json" >"$OUT/gen-g$((i + 1)).out" 2>"$OUT/gen-g$((i + 1)).log" &
  GEN_PID+=($!); PIDS+=($!)
  [[ $i -eq 0 ]] && log "generator: ${GEN_PIN[*]} switchboard bench idle --url ws://127.0.0.1:PORT/ws --server-pid GATEWAY_PID --subscribers $PER --sources $SOURCES --duration HOLD --json gen-gI.json"
  start=$(date +%s) last=0 last_gain=$start
  while :; do
    sleep 1
    n=$(established "${GW_PORT[i]}")
    now=$(date +%s)
    ((n > last)) && last_gain=$now
    last=$n
    ((n >= PER)) && break
    ((now - last_gain >= STALL)) && break
    ((now - start >= WAVE)) && break
    kill -0 "${GEN_PID[i]}" 2>/dev/null || break
  done
  WAVE_REACHED+=("$n"); WAVE_SECONDS+=($(($(date +%s) - start)))
  total=0; for c in "${WAVE_REACHED[@]}"; do total=$((total + c)); done # as each wave ended
  log "generator $((i + 1)): gateway g$((i + 1)) holds $n/$PER after ${WAVE_SECONDS[i]} s; sum over the waves: $total; memory in use $(mem_used) GiB; load $(cut -d' ' -f1 /proc/loadavg)"
  if ((n < PER)); then
    ceiling="gateway g$((i + 1)) reached $n of $PER: $(tail -n 2 "$OUT/gen-g$((i + 1)).log" | tr '\n' ' ')"
    break
  fi
done

# Measure.
sleep "$SETTLE"
TOTAL=0 COUNTS=() GW_RSS1=()
for ((i = 0; i < GATEWAYS; i++)); do GW_RSS1+=("$(rss_kib "${GW_PID[i]}")"); done
declare -A BY_PORT=()
while read -r port count; do BY_PORT[$port]=$count; done < <(established_by_port)
for ((i = 0; i < GATEWAYS; i++)); do
  c=${BY_PORT[${GW_PORT[i]}]:-0}; COUNTS+=("$c"); TOTAL=$((TOTAL + c))
done
NATS_RSS1=$(rss_kib "$NATS_PID") CONTROL_RSS1=$(rss_kib "$CONTROL_PID")
GEN_RSS=(); for p in "${GEN_PID[@]}"; do GEN_RSS+=("$(rss_kib "$p")"); done
SOCKSTAT=$(grep -E '^(TCP|sockets):' /proc/net/sockstat | tr '\n' ' ')
MEM_USED=$(mem_used)
log "measured after ${SETTLE} s settle: $TOTAL established connections (per gateway: ${COUNTS[*]})"
for ((i = 0; i < GATEWAYS; i++)); do
  c=${COUNTS[i]}
  per="–"; ((c > 0)) && per=$(awk -v a="${GW_RSS0[i]}" -v b="${GW_RSS1[i]}" -v c="$c" 'BEGIN {printf "%.2f", (b-a)/c}')
  log "  gateway g$((i + 1)) (pid ${GW_PID[i]}): $c connections, VmRSS ${GW_RSS0[i]} -> ${GW_RSS1[i]} KiB, $per KiB per connection"
done
log "  control VmRSS $CONTROL_RSS0 -> $CONTROL_RSS1 KiB; nats-server VmRSS $NATS_RSS0 -> $NATS_RSS1 KiB; generators VmRSS ${GEN_RSS[*]} KiB"
log "  memory in use $MEM_USED GiB; $SOCKSTAT; load $(cut -d' ' -f1-3 /proc/loadavg)"
[[ -n $ceiling ]] || ceiling_note="none hit: every gateway reached PER=$PER, the bound of this run"
log "  ceiling: ${ceiling:-$ceiling_note}"

# Let the generators end their hold and write their reports (bounded), then stop everything.
if ((REPORTS)); then
  log "waiting for the generators' reports (at most $((HOLD_MAX - $(elapsed) + 20)) s)"
  for p in "${GEN_PID[@]}"; do
    while kill -0 "$p" 2>/dev/null && (($(elapsed) < HOLD_MAX + 20)); do sleep 1; done
  done
fi
python3 - "$OUT" "$TOTAL" "$ceiling" "$MEM_USED" <<'EOF' | tee -a "$OUT/summary.txt" >&2
import glob, json, os, sys
out, total, ceiling, mem = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
gens = []
for path in sorted(glob.glob(os.path.join(out, "gen-g*.json"))):
    r = json.load(open(path))
    g = {"label": r.get("label"), "connections": r["connections"], "connect_failures": r["connect_failures"],
         "connects_per_sec": r["connect"]["per_sec"], "connect_p99_ms": r["connect"]["latency_ms"]["p99"],
         "server_rss_kib_per_connection": (r["server_rss_bytes_per_connection"] or 0) / 1024,
         "generator_cpu_fraction": r["generator_cpu_fraction"], "warnings": r.get("warnings", [])}
    gens.append(g)
    print(f"  {g['label']}: {g['connections']} connected, {g['connect_failures']} failed, "
          f"{g['connects_per_sec']:.0f} connects/s (p99 {g['connect_p99_ms']:.0f} ms), "
          f"gateway RSS per connection (generator's own reading) {g['server_rss_kib_per_connection']:.2f} KiB")
json.dump({"established_total": total, "ceiling": ceiling, "memory_in_use_gib": mem, "generators": gens},
          open(os.path.join(out, "summary.json"), "w"), indent=1)
EOF
log "results in ${OUT#"$ROOT"/}"
