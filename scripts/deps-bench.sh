#!/bin/sh
# Installs what the benchmarks' peers and clients need, beside scripts/deps.sh
# (which the tests need): libvirt's daemon (only its network driver is
# loaded, in a namespace of its own, by scripts/bench-lifecycle.sh) and its
# python client, iptables (libvirt's firewall backend), python3-gi (the
# Gio D-Bus client), Kea's DHCPv4 server and perfdhcp (kea-admin), dnsperf.
# All without recommends. Where systemd runs, installing
# kea-dhcp4-server would start a Kea service on the machine itself: it is
# then left out (scripts/bench-dhcp-dns.sh prints Kea's figure as n/a).
set -eu
PACKAGES="libvirt-daemon libvirt-clients python3-libvirt python3-gi iptables kea-admin dnsperf dnsmasq-base"
if [ ! -d /run/systemd/system ]; then
    PACKAGES="$PACKAGES kea-dhcp4-server"
else
    echo "not installing kea-dhcp4-server (systemd would start it on this machine)" >&2
fi
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "installing:$missing" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
