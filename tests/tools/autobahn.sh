#!/usr/bin/env bash
# Runs the Autobahn TestSuite (`wstest -m fuzzingclient`) against the RFC 6455 echo endpoint
# of `switchboard dev --test-echo-endpoint`, fails on any FAILED case, and writes the counts
# into docs/conformance.md (the block between the autobahn markers; the rest is hand-written).
#
#   tests/tools/autobahn.sh [--install-only] PATH/TO/switchboard
#
# Builds nothing. Installs wstest on first use into a cache dir: autobahntestsuite is Python 2
# code, so it goes into a Python 2.7 virtualenv (pyenv's 2.7.18, or AUTOBAHN_PYTHON2) made by
# a pinned `virtualenv` from a Python 3 venv. Compression cases (12.*, 13.*) are excluded: the
# gateway negotiates no extension. See docs/conformance.md.
set -euo pipefail

cd "$(dirname "$0")/../.."
CACHE=${AUTOBAHN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/switchboard/autobahn}
OUT=${AUTOBAHN_OUTDIR:-target/autobahn}
DOC=docs/conformance.md
PINS=(txaio==2.1.0 incremental==16.10.1 pyOpenSSL==19.1.0 cryptography==3.3.2 Twisted==19.10.0
  zope.interface==4.6.0 jinja2==2.11.3 markupsafe==1.1.1 Werkzeug==1.0.1 klein==17.10.0
  service_identity==18.1.0 unittest2==1.1.0 six==1.16.0 'autobahn[accelerate,twisted]==0.10.9'
  autobahntestsuite==25.10.1)

say() { echo "autobahn: $*" >&2; }

install_only=false
if [[ ${1:-} == --install-only ]]; then install_only=true; shift; fi

# --- install wstest (idempotent) ---
install() {
  local stamp="$CACHE/ab/.installed" want="${PINS[*]}"
  if [[ -x $CACHE/ab/bin/wstest && -f $stamp && $(cat "$stamp") == "$want" ]]; then return; fi
  local py2=${AUTOBAHN_PYTHON2:-}
  if [[ -z $py2 ]] && command -v pyenv >/dev/null; then py2="$(pyenv root)/versions/2.7.18/bin/python2.7"; fi
  if [[ -z $py2 || ! -x $py2 ]]; then
    say "missing Python 2.7 (wstest needs it): expected pyenv's 2.7.18 at ${py2:-\$(pyenv root)/versions/2.7.18}, or set AUTOBAHN_PYTHON2"
    exit 1
  fi
  command -v python3 >/dev/null || { say "missing python3 (with the venv module)"; exit 1; }
  say "installing wstest into $CACHE (once)"
  rm -rf "$CACHE/venv" "$CACHE/ab"
  mkdir -p "$CACHE"
  python3 -m venv "$CACHE/venv"
  "$CACHE/venv/bin/pip" install -q 'virtualenv<20.22'
  "$CACHE/venv/bin/virtualenv" -q -p "$py2" "$CACHE/ab"
  "$CACHE/ab/bin/pip" install -q --disable-pip-version-check "${PINS[@]}" 2>&1 | grep -v DEPRECATION >&2 || true
  [[ -x $CACHE/ab/bin/wstest ]] || { say "wstest did not install into $CACHE/ab"; exit 1; }
  echo "$want" >"$stamp"
}
install
if $install_only; then exit 0; fi

BIN=${1:?usage: tests/tools/autobahn.sh [--install-only] PATH/TO/switchboard}
[[ -x $BIN ]] || { say "no switchboard binary at $BIN (build it first: cargo build -p switchboard)"; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP=$(free_port)
GRPC=$(free_port)

rm -rf "$OUT"
mkdir -p "$OUT"
"$BIN" dev --test-echo-endpoint --listen "127.0.0.1:$HTTP" --grpc-listen "127.0.0.1:$GRPC" --no-page \
  >"$OUT/switchboard.log" 2>&1 &
DEV=$!
trap 'kill "$DEV" 2>/dev/null || true; wait "$DEV" 2>/dev/null || true' EXIT

for _ in $(seq 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$HTTP") 2>/dev/null; then break; fi
  kill -0 "$DEV" 2>/dev/null || { say "switchboard dev exited:"; cat "$OUT/switchboard.log" >&2; exit 1; }
  sleep 0.1
done

cat >"$OUT/spec.json" <<EOF
{
  "outdir": "reports",
  "servers": [{"agent": "switchboard", "url": "ws://127.0.0.1:$HTTP/echo"}],
  "cases": ["*"],
  "exclude-cases": ["12.*", "13.*"],
  "exclude-agent-cases": {}
}
EOF

say "running wstest -m fuzzingclient against ws://127.0.0.1:$HTTP/echo (log: $OUT/wstest.log)"
started=$(date +%s)
(cd "$OUT" && "$CACHE/ab/bin/wstest" -m fuzzingclient -s spec.json >wstest.log 2>&1) || {
  say "wstest failed to run:"; tail -20 "$OUT/wstest.log" >&2; exit 1
}
seconds=$(($(date +%s) - started))
kill "$DEV" 2>/dev/null || true
wait "$DEV" 2>/dev/null || true
trap - EXIT

# --- judge the results and write them into the doc ---
python3 - "$OUT/reports" "$DOC" "$seconds" <<'PY'
import collections, datetime, json, re, sys

reports, doc_path, seconds = sys.argv[1], sys.argv[2], sys.argv[3]
cases = json.load(open(reports + "/index.json"))["switchboard"]

def key(case_id):
    return [int(p) for p in case_id.split(".")]

ok_behavior = {"OK", "NON-STRICT", "INFORMATIONAL"}
ok_close = {"OK", "INFORMATIONAL"}
counts = collections.Counter()
sections = collections.defaultdict(collections.Counter)
failed, notable = [], []
for case_id in sorted(cases, key=key):
    r = cases[case_id]
    b, c = r["behavior"], r["behaviorClose"]
    bad = b not in ok_behavior or c not in ok_close
    verdict = "FAILED" if bad else b
    counts[verdict] += 1
    sections[case_id.split(".")[0]][verdict] += 1
    if bad:
        failed.append((case_id, b, c))
    elif b != "OK":
        notable.append((case_id, b))

total = sum(counts.values())
cols = ["OK", "NON-STRICT", "INFORMATIONAL", "FAILED"]
lines = [
    "<!-- autobahn:begin (written by tests/tools/autobahn.sh; edit outside the markers) -->",
    "",
    f"Last run: {datetime.date.today().isoformat()}, `tests/tools/autobahn.sh target/debug/switchboard`",
    f"(`wstest -m fuzzingclient -s spec.json`, autobahntestsuite 25.10.1, cases `*` except `12.*` and `13.*`, {seconds} s).",
    "",
    "| cases | total | " + " | ".join(cols) + " |",
    "|---|---:|" + "---:|" * len(cols),
]
for s in sorted(sections, key=int):
    n = sections[s]
    lines.append(f"| {s}.* | {sum(n.values())} | " + " | ".join(str(n[c]) for c in cols) + " |")
lines.append(f"| **all** | **{total}** | " + " | ".join(f"**{counts[c]}**" for c in cols) + " |")
lines.append("")
if notable:
    lines.append("Cases passed but not OK: " + ", ".join(f"{c} ({b})" for c, b in notable) + ".")
    lines.append("")
lines.append("<!-- autobahn:end -->")
block = "\n".join(lines)

try:
    doc = open(doc_path).read()
except FileNotFoundError:
    doc = "# WebSocket conformance\n\n## Autobahn TestSuite results\n\n<!-- autobahn:begin -->\n<!-- autobahn:end -->\n"
pattern = re.compile(r"<!-- autobahn:begin.*?<!-- autobahn:end -->", re.S)
if not pattern.search(doc):
    doc = doc.rstrip("\n") + "\n\n## Autobahn TestSuite results\n\n<!-- autobahn:begin -->\n<!-- autobahn:end -->\n"

def strip_volatile(text):
    return re.sub(r"Last run: [^\n]*\n[^\n]*\n", "", text)

old = pattern.search(doc).group(0)
# Rewrite only when a result changed, so a green `make test` leaves the tree clean.
if strip_volatile(old) != strip_volatile(block):
    doc = pattern.sub(lambda _: block, doc)
    open(doc_path, "w").write(doc)

summary = ", ".join(f"{counts[c]} {c}" for c in cols)
print(f"autobahn: {total} cases: {summary}", file=sys.stderr)
for case_id, b, c in failed:
    print(f"autobahn: FAILED {case_id}: behavior {b}, behaviorClose {c} (report: {reports}/switchboard_case_{case_id.replace('.', '_')}.html)", file=sys.stderr)
sys.exit(1 if failed else 0)
PY
