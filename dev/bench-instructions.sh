#!/usr/bin/env bash
# Instructions per message of each service, counted by callgrind (repeatable on a busy machine,
# unlike seconds). The pipeline benchmark runs twice, one round each, with every service under
# `valgrind --tool=callgrind`: once with SMALL messages, once with LARGE. The difference of the
# two counts divided by the difference of the message counts is what one more message costs,
# start-up and shutdown cancelled out. With BENCH_VECTOR set, Vector is counted the same way.
#
# Usage: make bench-instructions [INSTR_SMALL=2000] [INSTR_LARGE=6000]
# Writes target/bench/instructions/instructions.{md,json}.
set -euo pipefail
cd "$(dirname "$0")/.."

small=${INSTR_SMALL:-2000}
large=${INSTR_LARGE:-6000}
out=$PWD/target/bench/instructions
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }
rm -rf "$out"
for messages in "$small" "$large"; do
  mkdir -p "$out/$messages"
  echo "[instructions] $messages messages, every service under callgrind ..."
  FR_CALLGRIND_DIR="$out/$messages" BENCH_OUT="$out/$messages" BENCH_MESSAGES="$messages" \
    BENCH_ROUNDS=1 BENCH_VECTOR_RECEIVERS="${BENCH_VECTOR_RECEIVERS:-2}" \
    cargo bench -p fetchreward-e2e --bench pipeline >/dev/null
done
python3 dev/instructions.py "$out" "$small" "$large"
