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
cargo test --workspace -- --test-threads="${GUESTNET_TEST_THREADS:-4}"
