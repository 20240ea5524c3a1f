#!/bin/sh
# Installs the Debian packages guestnet's service, sandbox and tests need.
set -eu
PACKAGES="iproute2 nftables dbus dbus-daemon busybox dnsutils iputils-ping netcat-openbsd python3 procps"
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "installing:$missing" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
