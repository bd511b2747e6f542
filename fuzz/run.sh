#!/usr/bin/env bash
# Runs the cargo-fuzz targets one after another, FUZZ_SECONDS (default 60) each, and prints
# one summary line per target. `make fuzz`; not part of `make test`.
#
#   fuzz/run.sh [TARGET…]     (default: every target in fuzz/Cargo.toml)
#
# Needs the nightly toolchain and cargo-fuzz (installed when missing). A crash stops the run;
# its input is in fuzz/artifacts/TARGET/ and `cargo +nightly fuzz run TARGET FILE` replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
if (($#)); then targets=("$@"); else targets=(frame_reader json_command protobuf_command channel); fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
mkdir -p fuzz/logs
for t in "${targets[@]}"; do
  corpus=(fuzz/corpus/"$t")
  mkdir -p "${corpus[0]}"
  [[ -d fuzz/seeds/$t ]] && corpus+=(fuzz/seeds/"$t")
  flags=(-max_total_time="$seconds")
  [[ -f fuzz/$t.dict ]] && flags+=(-dict=fuzz/"$t".dict)
  echo "fuzz: $t for ${seconds}s (log: fuzz/logs/$t.log)"
  if ! cargo +nightly fuzz run "$t" "${corpus[@]}" -- "${flags[@]}" >"fuzz/logs/$t.log" 2>&1; then
    grep -E '^(==|SUMMARY|thread|panicked|.*artifact_prefix|Test unit written)' "fuzz/logs/$t.log" | head -20 >&2 || true
    echo "fuzz: $t FAILED (see fuzz/logs/$t.log, input in fuzz/artifacts/$t/)" >&2
    exit 1
  fi
  runs=$(grep -oE '^Done [0-9]+ runs in [0-9]+ second' "fuzz/logs/$t.log" | tail -1)
  cov=$(grep -E '^#[0-9]+\s+DONE' "fuzz/logs/$t.log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[^ ]+')
  echo "fuzz: $t ok: ${runs:-?}s, ${cov:-?}, no crash"
done
