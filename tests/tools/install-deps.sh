#!/usr/bin/env bash
# Installs what the test suite needs, when it is missing. Safe to run repeatedly.
set -euo pipefail

js_only=false
[[ ${1:-} == --js-only ]] && js_only=true

need=()
# Node (>= 18: bookworm's), npm and Chromium for the JS SDK and browser tests (clients/js).
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
# promtool: `promtool check metrics` in the e2e tests, `promtool test rules` in make test.
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
# The Autobahn TestSuite's installer makes a Python 3 venv (see tests/tools/autobahn.sh).
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)

if ((${#need[@]})); then
  if [[ $(id -u) -ne 0 ]] && ! command -v sudo >/dev/null; then
    echo "install-deps: need root (or sudo) to apt-get install ${need[*]}" >&2
    exit 1
  fi
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  echo "install-deps: installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The JS packages (pinned in clients/js/package-lock.json): again whenever the lock changed.
js="$(dirname "$0")/../../clients/js"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' || {
  echo "install-deps: node $(node --version) is too old for clients/js (18 or later)" >&2
  exit 1
}
if ! cmp -s "$js/package-lock.json" "$js/node_modules/.switchboard-lock" 2>/dev/null; then
  (cd "$js" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$js/package-lock.json" "$js/node_modules/.switchboard-lock"
fi
echo "install-deps: node $(node --version), $(chromium --version 2>/dev/null | head -1), clients/js packages ready"
$js_only && exit 0

echo "install-deps: nats-server $(nats-server --version 2>/dev/null | head -1)"
echo "install-deps: $(promtool --version 2>/dev/null | head -1)"

# helm-python-sdk, kubernetes-validate and pytest for the chart tests, in a cached venv.
"$(dirname "$0")/chart-test.sh" --install-only
echo "install-deps: chart test tools ready"

# wstest (Python 2.7 in a cached virtualenv); says in one line what is missing, if anything.
"$(dirname "$0")/autobahn.sh" --install-only
echo "install-deps: autobahntestsuite (wstest) ready"
