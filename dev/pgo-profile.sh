#!/usr/bin/env bash
# make pgo-profile: record the profile that release builds are optimised with
# (pgo/fetchreward.profdata, docs/performance.md "Profile-guided release build").
#
# The three services are built instrumented (-Cprofile-generate) into target/pgo-generate, one
# round of the pipeline benchmark runs through them on the local stack, and the counts the
# processes write as they shut down are merged, without the functions never run (--sparse).
# The benchmark's own binary is the ordinary release build: only the services are counted.
#
#   PGO_MESSAGES=100000   messages of the training round
#
# Needs the local stack (make up) and llvm-profdata of LLVM 19 or newer (Debian's llvm-19,
# installed when missing): older ones cannot read the toolchain's raw profiles.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
messages=${PGO_MESSAGES:-100000}
profile=$root/pgo/fetchreward.profdata
generate=$root/target/pgo-generate
raw=$generate/raw

say() { printf '[pgo] %s\n' "$*"; }

[ -f target/dev/env ] || { say "the local stack is not up: run make up"; exit 1; }

profdata=/usr/lib/llvm-19/bin/llvm-profdata
if [ ! -x "$profdata" ]; then
  say "installing llvm-19 (Debian) for llvm-profdata ..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq llvm-19 >/dev/null
fi

say "instrumented build of the services into $generate ..."
RUSTFLAGS="-Cprofile-generate=$raw" CARGO_TARGET_DIR=$generate \
  cargo build --release --locked -p fetchreward-vault -p fetchreward-writer -p fetchreward-ingestor --bins

say "release build of the benchmark ..."
bench=$(RUSTFLAGS=$(bash dev/release-rustflags.sh) cargo bench --locked -p fetchreward-e2e \
  --bench pipeline --no-run --message-format=json |
  python3 -c 'import json, sys
for line in sys.stdin:
    unit = json.loads(line)
    if unit.get("reason") == "compiler-artifact" and unit["target"]["name"] == "pipeline" and unit.get("executable"):
        print(unit["executable"])')

# The build's own scripts and macros were instrumented too: only the round's counts are kept.
rm -rf "$raw"
mkdir -p "$raw"
say "one round of $messages messages through the instrumented services ..."
(
  set -a
  # shellcheck disable=SC1091 # written by dev/up.sh
  . target/dev/env
  set +a
  CARGO_TARGET_DIR=$generate LLVM_PROFILE_FILE="$raw/%p.profraw" BENCH_MESSAGES=$messages \
    BENCH_ROUNDS=1 BENCH_OUT=$generate/bench "$bench" --bench >"$generate/bench.log"
)
shopt -s nullglob
counts=("$raw"/*.profraw)
[ "${#counts[@]}" -eq 3 ] || { say "expected the counts of 3 services, found ${#counts[@]}"; exit 1; }

mkdir -p "$(dirname "$profile")"
"$profdata" merge --sparse -o "$profile" "${counts[@]}"
functions=$("$profdata" show "$profile" | sed -n 's/^Total functions: //p')
say "wrote $profile ($functions functions, $(du -h "$profile" | cut -f1))"
