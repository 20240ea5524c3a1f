#!/bin/bash
# The mode API as an author outside guestnet gets it: packages
# guestnet-mode-api (`cargo package`, which also builds the packaged crate),
# unpacks the .crate into a temporary directory beside a copy of
# tests/fixtures/mode-packaged (a mode that depends on that unpacked crate
# by path and on nothing else), and runs the mode's tests there, with no
# workspace around them. Fails on the first error.
#
# Offline: run it after a build of the workspace (scripts/test.sh does),
# which has put every crate the API needs into cargo's cache.
# --allow-dirty: what is packaged is the working tree, committed or not.
#
#   scripts/check-packaged-api.sh
set -euo pipefail
cd "$(dirname "$0")/.."
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
work=$(mktemp -d -t gnt-packaged-api-XXXXXX)
trap 'rm -rf "$work"' EXIT

rm -f "$target"/package/guestnet-mode-api-*.crate
if ! cargo package --offline --allow-dirty -p guestnet-mode-api; then
    echo "check-packaged-api: cargo package -p guestnet-mode-api FAILED" >&2
    exit 1
fi
crates=("$target"/package/guestnet-mode-api-*.crate)
if [[ ${#crates[@]} != 1 || ! -f ${crates[0]} ]]; then
    echo "check-packaged-api: expected one .crate after cargo package, found: ${crates[*]}" >&2
    exit 1
fi
crate=${crates[0]}
version=$(basename "$crate" .crate)
version=${version#guestnet-mode-api-}

tar -xzf "$crate" -C "$work"
mv "$work/guestnet-mode-api-$version" "$work/guestnet-mode-api"
cp -r tests/fixtures/mode-packaged "$work/mode-packaged"
if ! cargo test --offline --manifest-path "$work/mode-packaged/Cargo.toml" \
    --target-dir "$target/fixtures"; then
    echo "check-packaged-api: the mode built on the packaged guestnet-mode-api $version FAILED" >&2
    exit 1
fi
echo "check-packaged-api: guestnet-mode-api $version packages, and a mode on it alone builds and passes its tests"
