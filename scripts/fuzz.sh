#!/bin/bash
# Runs every fuzz target for SECONDS each (default 120) and reports what it
# found. cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP lets the stable
# toolchain provide them.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECONDS_EACH=${1:-120}
shift || true
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
TARGETS=("$@")
if [[ ${#TARGETS[@]} == 0 ]]; then
    mapfile -t TARGETS < <(cargo fuzz list)
fi
cargo fuzz build -O
for t in "${TARGETS[@]}"; do
    echo "== $t: ${SECONDS_EACH}s"
    if cargo fuzz run -O "$t" -- -max_total_time="$SECONDS_EACH" -max_len=4096 2>&1 | tail -3; then
        echo "== $t: no crash"
    else
        echo "== $t: CRASH, see fuzz/artifacts/$t/"
    fi
done
