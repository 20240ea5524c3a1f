#!/bin/sh
# Assembles the kernel and initramfs of the tests' VM guest (tests/src/vm.rs):
#
#   scripts/vm-assets.sh [OUTROOT]      (default: target/vm-assets)
#
# prints `kernel=PATH`, `initrd=PATH` and `key=KEY` on stdout, the assets
# living in OUTROOT/KEY/. KEY names the Debian kernel and busybox-static
# packages and a hash of this script, so a second run finds them and only asks
# apt which versions are current.
#
# Nothing is installed into the system: the packages are fetched with
# `apt-get download` into a temporary directory (removed on exit) and unpacked
# there with `dpkg -x`:
#   - the kernel: Debian's linux-image-amd64 (the versioned linux-image-*
#     package it depends on; GUESTNET_VM_KERNEL_PKG names another): its vmlinuz
#     and the modules the guest's network needs, with their dependencies
#     (read from each module's .modinfo), in load order;
#   - busybox-static (a static busybox: sh, mount, insmod, ip, udhcpc, ...);
#     not installed, as it conflicts with the machine's busybox package.
# The initramfs (newc cpio, gzip) holds busybox, the modules, /init and a
# udhcpc script; see the init text below for what the guest does.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
outroot=${1:-$here/../target/vm-assets}
mkdir -p "$outroot"
outroot=$(cd "$outroot" && pwd)

# The modules the guest loads (their dependencies come along).
ROOT_MODULES="virtio_pci virtio_net"

die() {
    echo "vm-assets: $*" >&2
    exit 1
}

# One apt-cache call (each takes most of a second here): linux-image-amd64's
# exact dependency, its version, and busybox-static's version.
# Prints `KPKG KVER BBVER`.
versions() {
    apt-cache show --no-all-versions linux-image-amd64 busybox-static 2>/dev/null | awk '
        /^Package: / { pkg = $2 }
        pkg == "linux-image-amd64" && /^Depends: / {
            n = split(substr($0, 10), deps, ",")
            for (i = 1; i <= n; i++)
                if (kpkg == "" && match(deps[i], /linux-image-[0-9][^ ]*-amd64/)) {
                    kpkg = substr(deps[i], RSTART, RLENGTH)
                    kver = "-"
                    if (match(deps[i], /\(= [^)]*\)/))
                        kver = substr(deps[i], RSTART + 3, RLENGTH - 4)
                }
        }
        pkg == "busybox-static" && /^Version: / { bbver = $2 }
        END { if (kpkg != "" && bbver != "") print kpkg, kver, bbver }'
}

v=$(versions)
if [ -z "$v" ]; then
    # No package lists yet (a fresh machine): fetch them once.
    apt-get update -qq >&2 || die "apt-get update failed"
    v=$(versions)
fi
[ -n "$v" ] || die "apt-cache show linux-image-amd64 busybox-static: cannot tell the kernel package and versions"
set -- $v
kpkg=$1 kver=$2 bbver=$3
[ -n "${GUESTNET_VM_KERNEL_PKG:-}" ] && kpkg=$GUESTNET_VM_KERNEL_PKG kver=-
if [ "$kver" = - ]; then
    kver=$(apt-cache show --no-all-versions "$kpkg" 2>/dev/null | sed -n 's/^Version: //p' | head -n 1)
    [ -n "$kver" ] || die "apt knows no version of $kpkg"
fi
self_hash=$(sha256sum "$0" | cut -c1-12)
key=$(printf '%s_%s+busybox_%s+%s' "$kpkg" "$kver" "$bbver" "$self_hash" | tr -c 'A-Za-z0-9._+\n-' '_')
dest=$outroot/$key

print_result() {
    echo "kernel=$dest/vmlinuz"
    echo "initrd=$dest/initrd.gz"
    echo "key=$key"
}

if [ -f "$dest/done" ]; then
    print_result
    exit 0
fi

# One builder at a time (tests run in parallel); the loser finds it done.
exec 9>"$outroot/.lock"
flock 9
if [ -f "$dest/done" ]; then
    print_result
    exit 0
fi

stage=$outroot/.$key.$$
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gnt-vm-assets.XXXXXX")
trap 'rm -rf "$tmp" "$stage"' EXIT
trap 'exit 1' INT TERM
cd "$tmp"

echo "vm-assets: fetching $kpkg=$kver and busybox-static=$bbver (apt-get download; nothing is installed)" >&2
# The sandbox user _apt cannot write into a private temporary directory.
apt-get download -q -o APT::Sandbox::User=root "$kpkg=$kver" "busybox-static=$bbver" >&2 ||
    die "apt-get download $kpkg busybox-static failed"
mkdir kpkg bbpkg
dpkg -x "$(ls ./linux-image-*.deb | head -n 1)" kpkg
dpkg -x "$(ls ./busybox-static_*.deb | head -n 1)" bbpkg

vmlinuz=$(ls kpkg/boot/vmlinuz-* | head -n 1)
[ -f "$vmlinuz" ] || die "no vmlinuz in $kpkg"
moddir=$(ls -d kpkg/lib/modules/*/ | head -n 1)
[ -d "$moddir" ] || die "no lib/modules in $kpkg"
busybox=bbpkg/bin/busybox
[ -x "$busybox" ] || die "no bin/busybox in busybox-static"
if command -v file >/dev/null 2>&1; then
    file -L "$busybox" | grep -q 'statically linked' || die "busybox-static's busybox is not static: $(file -L "$busybox")"
fi

# A module's file by its name ('-' and '_' are the same to the kernel).
find "$moddir" -name '*.ko' | awk -F/ '{ n = $NF; sub(/\.ko$/, "", n); gsub(/-/, "_", n); print n, $0 }' >modindex
modpath() {
    awk -v want="$(echo "$1" | tr '-' '_')" '$1 == want { print $2; found = 1; exit } END { exit !found }' modindex
}
# Built in (config =y, listed in modules.builtin): nothing to load.
builtin() {
    want=$(echo "$1" | tr '-' '_')
    tr '-' '_' <"$moddir/modules.builtin" | grep -q "/$want\.ko\$"
}
# add NAME: appends NAME's dependencies, then NAME, to the load order.
: >order
add() {
    local name f deps d
    name=$(echo "$1" | tr '-' '_')
    grep -qx "$name" order && return 0
    if ! f=$(modpath "$name"); then
        builtin "$name" && return 0
        die "module $name is neither a file of $kpkg nor built in"
    fi
    # depends= from the module's .modinfo (what `modinfo -F depends` prints).
    deps=$(tr '\0' '\n' <"$f" | sed -n 's/^depends=//p' | head -n 1 | tr ',' ' ')
    for d in $deps; do
        add "$d"
    done
    echo "$name" >>order
    echo "$f" >>orderfiles
}
: >orderfiles
for m in $ROOT_MODULES; do
    add "$m"
done
config=$(ls kpkg/boot/config-* | head -n 1)
for opt in CONFIG_PACKET CONFIG_UNIX CONFIG_INET CONFIG_BLK_DEV_INITRD CONFIG_RD_GZIP CONFIG_DEVTMPFS CONFIG_SERIAL_8250_CONSOLE; do
    grep -q "^$opt=y" "$config" || die "$kpkg's kernel lacks $opt=y, which the guest needs"
done

# The initramfs tree.
r=root
mkdir -p $r/bin $r/sbin $r/usr/bin $r/usr/sbin $r/etc $r/lib/modules $r/proc $r/sys $r/dev $r/tmp $r/run $r/root
cp "$busybox" $r/bin/busybox
while read -r f; do
    cp "$f" $r/lib/modules/
done <orderfiles
cp order $r/etc/modules.order
if [ "$(id -u)" = 0 ]; then
    mknod -m 600 $r/dev/console c 5 1
    mknod -m 666 $r/dev/null c 1 3
fi

cat >$r/init <<'EOF'
#!/bin/busybox sh
# PID 1 of the guestnet test VM. Every line for the test starts GUESTNET-VM-.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s
exec </dev/console >/dev/console 2>&1
echo "GUESTNET-VM-INIT kernel=$(uname -r)"
for m in $(cat /etc/modules.order); do
    insmod "/lib/modules/$m.ko" || echo "GUESTNET-VM-ERROR insmod $m"
done
# Options from the kernel command line: guestnet.hostname=NAME.
host=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    guestnet.hostname=*) host=${arg#guestnet.hostname=} ;;
    esac
done
[ -n "$host" ] && hostname "$host"
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 200 ]; do
    sleep 0.1
    i=$((i + 1))
done
if [ ! -e /sys/class/net/eth0 ]; then
    echo "GUESTNET-VM-ERROR no eth0"
else
    ip link set lo up
    ip link set eth0 up
    echo "GUESTNET-VM-LINK eth0 $(cat /sys/class/net/eth0/address)"
    # In the background and without -q, so the lease is renewed; it retries
    # for ever (no -n): the test's timeout decides.
    if [ -n "$host" ]; then
        udhcpc -i eth0 -f -t 20 -T 2 -A 3 -s /etc/udhcpc.script -x "hostname:$host" &
    else
        udhcpc -i eth0 -f -t 20 -T 2 -A 3 -s /etc/udhcpc.script &
    fi
fi
# PID 1 never exits (that would panic the kernel): it stays to answer pings.
while :; do
    sleep 3600
done
EOF
chmod 755 $r/init

cat >$r/etc/udhcpc.script <<'EOF'
#!/bin/sh
# udhcpc's script in the guest: sets the address and default route (busybox
# ip) and reports each lease on the console.
case "$1" in
deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound | renew)
    ip addr replace "$ip/$mask" dev "$interface"
    gw=${router%% *}
    [ -n "$gw" ] && ip route replace default via "$gw" dev "$interface"
    if [ "$1" = bound ]; then what=READY; else what=RENEW; fi
    echo "GUESTNET-VM-$what $ip/$mask router=$gw dns=$(echo $dns | tr ' ' ',') lease=$lease server=$serverid"
    ;;
leasefail | nak)
    echo "GUESTNET-VM-DHCP $1 $message"
    ;;
esac
exit 0
EOF
chmod 755 $r/etc/udhcpc.script

rm -rf "$stage"
mkdir -p "$stage"
(cd $r && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -9 >"$stage/initrd.gz"
cp "$vmlinuz" "$stage/vmlinuz"
{
    echo "kernel package: $kpkg $kver"
    echo "busybox-static: $bbver"
    echo "modules (load order): $(tr '\n' ' ' <order)"
} >"$stage/info"
: >"$stage/done"
rm -rf "$dest"
mv "$stage" "$dest"
# Assets of other versions (or of an older script) are of no more use.
for old in "$outroot"/linux-image-*; do
    [ "$old" = "$dest" ] || rm -rf "$old"
done
echo "vm-assets: built $dest ($(tr '\n' ' ' <order))" >&2
print_result
