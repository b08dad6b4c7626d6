#!/usr/bin/env bash
# The RUSTFLAGS of every release build (the Makefile's, make image's, the Dockerfile's): the
# committed profile of a benchmark round guides the optimiser (docs/performance.md,
# "Profile-guided release build"). Every release build of the tree must use the same flags, or
# cargo rebuilds the shared dependencies each time they alternate.
set -euo pipefail
profile="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/pgo/fetchreward.profdata"
if [ -f "$profile" ]; then
  printf -- '-Cprofile-use=%s\n' "$profile"
else
  echo "release-rustflags: $profile is missing (make pgo-profile records it): building without it" >&2
fi
