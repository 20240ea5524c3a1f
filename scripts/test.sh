#!/bin/bash
# Runs guestnet's whole test suite: unit tests without root, end-to-end tests
# in network namespaces of their own (they need root and fail loudly without
# it under CI=true). Installs the Debian packages the tests use first.
#
#   sudo scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) == 0 ]]; then
    scripts/deps.sh
else
    echo "test.sh: not root: the end-to-end tests will be skipped (or fail under CI=true)" >&2
fi
# The end-to-end tests run the built guestnetd with the built mode libraries
# and the loader's fixtures, so build them all first.
cargo build --workspace
cargo build --workspace --examples
# A mode built against the first release's mode API (tests/fixtures/mode-v1
# and mode-api-1.0, outside the workspace), which tests/tests/mode_compat.rs
# loads. --locked: its own Cargo.lock; cargo goes to the network only for
# crates missing from the local cache (none after the builds above, unless
# that lock and the workspace's have drifted apart).
cargo build --locked --manifest-path tests/fixtures/mode-v1/Cargo.toml \
    --target-dir "${CARGO_TARGET_DIR:-target}/fixtures"
# guestnet-mode-api as a crate of its own: it packages, and a mode that
# depends on the packaged crate alone builds and passes its tests.
scripts/check-packaged-api.sh
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
status=0
cargo test --workspace -- --test-threads="${GUESTNET_TEST_THREADS:-4}" 2>&1 | tee "$LOG" || status=$?
# One closing line for the whole suite: cargo's last "test result" line is
# that of the last (often empty) doc-test crate.
awk '/^test result:/ { p += $4; f += $6 }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$LOG"
exit "$status"
