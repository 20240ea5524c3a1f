#!/bin/sh
# Installs the Debian packages guestnet's service, sandbox and tests need.
set -eu
# isc-dhcp-client: dhclient, a DHCP client of the tests. dnsmasq-base: the
# dnsmasq binary alone (the tests' upstream DNS server, run in a namespace);
# not the "dnsmasq" package, which would start a system-wide dnsmasq service.
# libglib2.0-bin: gdbus. polkitd: the polkit daemon the authorization tests
# start on their own private bus (useradd, groupadd: passwd; setpriv, flock:
# util-linux).
PACKAGES="iproute2 nftables dbus dbus-daemon busybox dnsutils iputils-ping netcat-openbsd python3 procps isc-dhcp-client dnsmasq-base libglib2.0-bin polkitd"
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "installing:$missing" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
