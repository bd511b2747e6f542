#!/usr/bin/env bash
# Installs what the benchmark suite needs beyond the Rust toolchain, when it is missing:
# nats-server (the cluster's bus and the nats-ws peer), redis-server (the Socket.IO
# adapters), Node.js with npm, and the Socket.IO packages (both Redis adapters) into bench/node_modules.
# Run by `make bench`; never by `make test`.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
command -v nats-server >/dev/null || missing+=(nats-server)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v taskset >/dev/null || missing+=(util-linux)
if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${missing[@]}"
fi
if [[ ! -d node_modules/socket.io || ! -d node_modules/@socket.io/redis-adapter || ! -d node_modules/@socket.io/redis-streams-adapter ]]; then
  npm install --no-audit --no-fund --silent
fi
