#!/bin/sh
# Installs the Debian packages guestnet's service, sandbox and tests need.
set -eu
# isc-dhcp-client: dhclient, a DHCP client of the tests. dnsmasq-base: the
# dnsmasq binary alone (the tests' upstream DNS server, run in a namespace);
# not the "dnsmasq" package, which would start a system-wide dnsmasq service.
# libglib2.0-bin: gdbus. polkitd: the polkit daemon the authorization tests
# start on their own private bus (useradd, groupadd: passwd; setpriv, flock:
# util-linux). systemd: systemd-analyze, which rates the shipped unit's
# sandbox offline (tests/tests/systemd_unit.rs); it need not run.
PACKAGES="iproute2 nftables dbus dbus-daemon busybox dnsutils iputils-ping netcat-openbsd python3 procps isc-dhcp-client dnsmasq-base libglib2.0-bin polkitd systemd strace"
# The VM tests (tests/src/vm.rs): qemu-system-x86 runs the guest, cpio packs
# its initramfs (scripts/vm-assets.sh, which fetches the kernel and
# busybox-static with apt-get download at test time, installing neither).
# Without recommends: they would add some 150 packages (GUI, audio).
PACKAGES_NO_RECOMMENDS="qemu-system-x86 cpio"
# tests/tests/firewalld.rs runs firewalld only inside a test namespace, on
# the test's bus. Its package enables and starts firewalld.service at
# install, which on a machine running systemd would firewall the machine
# itself: install it only where systemd is not running (the test skips
# without it).
if [ ! -d /run/systemd/system ]; then
    PACKAGES_NO_RECOMMENDS="$PACKAGES_NO_RECOMMENDS firewalld"
else
    echo "not installing firewalld (systemd would start it on this machine); tests/tests/firewalld.rs will skip" >&2
fi
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
missing_nr=""
for p in $PACKAGES_NO_RECOMMENDS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing_nr="$missing_nr $p"
done
if [ -n "$missing$missing_nr" ]; then
    echo "installing:$missing$missing_nr" >&2
    apt-get update -qq
fi
if [ -n "$missing" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
if [ -n "$missing_nr" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing_nr >/dev/null
fi
