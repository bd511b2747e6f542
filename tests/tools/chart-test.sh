#!/usr/bin/env bash
# The deployment checks of `make test`: the alert rules (`promtool check rules`, `promtool
# test rules`) and the Helm chart (tests/chart/test_chart.py: lint, render, Kubernetes
# schemas, the contract with the binary). Builds nothing.
#
#   tests/tools/chart-test.sh PATH/TO/switchboard [pytest args…]
#   tests/tools/chart-test.sh --install-only
#
# The chart tests run in a Python venv under the cache dir with pinned helm-python-sdk
# (Helm's Go SDK, no helm binary), kubernetes-validate, PyYAML and pytest; this script
# makes it on first use.
set -euo pipefail

cd "$(dirname "$0")/../.."
CACHE=${CHART_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/switchboard/chart-venv}
PINS=(helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 PyYAML==6.0.4 pytest==9.2.0)

say() { echo "chart-test: $*" >&2; }

install() {
  local stamp="$CACHE/.installed" want="${PINS[*]}"
  if [[ -x $CACHE/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then return; fi
  command -v python3 >/dev/null || { say "missing python3 (with the venv module)"; exit 1; }
  say "installing ${PINS[*]} into $CACHE (once)"
  rm -rf "$CACHE"
  python3 -m venv "$CACHE"
  "$CACHE/bin/pip" install -q --disable-pip-version-check "${PINS[@]}"
  echo "$want" >"$stamp"
}

install
if [[ ${1:-} == --install-only ]]; then exit 0; fi
if [[ ${1:-} == --python ]]; then shift; exec "$CACHE/bin/python" "$@"; fi

bin=${1:?usage: tests/tools/chart-test.sh PATH/TO/switchboard}
shift
command -v promtool >/dev/null || { say "promtool is missing: run \`make deps\` (it installs Debian's prometheus package)"; exit 1; }
[[ -x $bin ]] || { say "$bin is missing: build it first (cargo build -p switchboard)"; exit 1; }

promtool check rules deploy/prometheus/rules.yaml
(cd deploy/prometheus && promtool test rules rules.test.yaml)
SWITCHBOARD_BIN="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")" \
  "$CACHE/bin/python" -m pytest -q -p no:cacheprovider tests/chart "$@"
