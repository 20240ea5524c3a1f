#!/bin/bash
# Times network start and stop, and the daemons' resident memory, for
# guestnetd and for libvirt's network driver (libvirtd 9.0) side by side in
# one run on this machine, each in a network namespace of its own, each
# driven from one client process through its own API
# (scripts/bench-lifecycle.py: Gio D-Bus calls to guestnetd, libvirt-python's
# networkLookupByName(n).create()/.destroy() to libvirtd). Then the cost of one
# start and one stop with 1, 50, 100, 200 networks active.
#
# Nothing touches the machine's own network namespace: libvirtd runs in its
# namespace (it loads only its network driver; its bridges, iptables rules
# and dnsmasq processes live there), guestnetd in another. The script
# compares the root namespace's links, nft ruleset and iptables rules before
# and after, and prints that check. Every network is destroyed and undefined,
# every process it started is ended by its id, the namespaces and libvirt's
# files for the networks it made are removed, also on Ctrl-C.
#
#   sudo scripts/bench-lifecycle.sh [--no-build] [--guestnet-only]
#
# Knobs (environment): ROUNDS (20), MANY (50), SCALE ("1,50,100,200"),
# LV_SCALE (libvirt's sizes, "1,50,100": see below), SCALE_ROUNDS (10), GUESTNETD
# (the binary, its mode libraries beside it; default target/release/guestnetd,
# built here).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=1
DO_LV=1
for arg in "$@"; do
    case "$arg" in
        --no-build) BUILD=0 ;;
        --guestnet-only) DO_LV=0 ;;
        -h | --help) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "bench-lifecycle: unknown argument $arg" >&2; exit 2 ;;
    esac
done
ROUNDS=${ROUNDS:-20}
MANY=${MANY:-50}
SCALE=${SCALE:-1,50,100,200}
# libvirt stops at 127 networks here: each network's dnsmasq takes an inotify
# instance, and fs.inotify.max_user_instances (128 on Debian; a host-wide
# sysctl this script leaves alone) caps them.
LV_SCALE=${LV_SCALE:-1,50,100}
SCALE_ROUNDS=${SCALE_ROUNDS:-10}
fail() { echo "bench-lifecycle: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || fail "needs root"
scripts/deps.sh
scripts/deps-bench.sh
if [[ -n ${GUESTNETD:-} ]]; then
    BUILD=0
fi
GUESTNETD=${GUESTNETD:-target/release/guestnetd}
if [[ $BUILD == 1 ]]; then
    nice cargo build --release --quiet -p guestnetd -p guestnet-mode-nat -p guestnet-mode-isolated \
        -p guestnet-mode-routed -p guestnet-mode-bridged
fi
LV_SOCK=/run/libvirt/libvirt-sock
if [[ $DO_LV == 1 && -e $LV_SOCK ]]; then
    fail "$LV_SOCK exists: another libvirtd runs (only one at a time); stop it or use --guestnet-only"
fi

ID=$$
HOST=gnblc$ID-gn
LV=gnblc$ID-lv
DIR=$(mktemp -d /tmp/guestnet-benchlc.XXXXXX)
PIDS=()
NSS=()
# libvirt's directories that this run creates (removed at the end) and the
# files it writes for its networks (named lvb*)
LV_DIRS=(/run/libvirt /etc/libvirt/qemu /var/lib/libvirt /var/cache/libvirt /var/log/libvirt)
LV_NEW_DIRS=()
for d in "${LV_DIRS[@]}"; do [[ -e $d ]] || LV_NEW_DIRS+=("$d"); done
LV_STARTED=0

root_state() {
    {
        echo "== ip -br link"; ip -br link | awk '{print $1, $2}'
        echo "== nft -s list ruleset"; nft -s list ruleset
        echo "== iptables-save"; iptables-save 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//'
        echo "== ip6tables-save"; ip6tables-save 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//'
    } >"$1" || true
}

lv_cleanup() {
    if [[ $LV_STARTED == 1 && -S $LV_SOCK ]]; then
        for n in $(timeout 20 virsh -q -c network:///system net-list --all --name 2>/dev/null | grep '^lvb'); do
            timeout 20 virsh -q -c network:///system net-destroy "$n" >/dev/null 2>&1
            timeout 20 virsh -q -c network:///system net-undefine "$n" >/dev/null 2>&1
        done
    fi
    rm -f /etc/libvirt/qemu/networks/lvb*.xml /etc/libvirt/qemu/networks/autostart/lvb*.xml \
        /run/libvirt/network/lvb*.xml /run/libvirt/network/lvb*.pid /var/lib/libvirt/dnsmasq/lvb* 2>/dev/null
}

cleanup() {
    set +e
    lv_cleanup
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    # what the daemons started in their namespaces (libvirt's dnsmasq
    # processes), by id
    for ns in "${NSS[@]}"; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
    for d in "${LV_NEW_DIRS[@]}"; do rm -rf "$d"; done
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

root_state "$DIR/root.before"

# ---- guestnetd -----------------------------------------------------------------
ip netns add "$HOST"
NSS+=("$HOST")
ip -n "$HOST" link set lo up
ip -n "$HOST" link add up0 type dummy 2>/dev/null || ip -n "$HOST" link add up0 type veth peer name up1
ip -n "$HOST" addr add 10.200.0.1/24 dev up0
ip -n "$HOST" link set up0 up
ip -n "$HOST" route add default via 10.200.0.254 dev up0
sed -e "s|@LISTEN@|unix:path=$DIR/bus|" -e "s|@POLICY@|$PWD/dbus/data/org.guestnet1.conf|" \
    scripts/private-bus.conf.in >"$DIR/bus.conf"
dbus-daemon --config-file="$DIR/bus.conf" --nofork --nopidfile &
PIDS+=($!)
for _ in $(seq 100); do [[ -S $DIR/bus ]] && break; sleep 0.05; done
echo "nameserver 10.200.0.2" >"$DIR/resolv.conf"
GN_CMD=("$GUESTNETD" --modes-dir "$(dirname "$GUESTNETD")" --bus-address "unix:path=$DIR/bus" --config-dir "$DIR/etc"
    --state-dir "$DIR/state" --runtime-dir "$DIR/run" --resolv-conf "$DIR/resolv.conf")
GUESTNET_LOG=warn ip netns exec "$HOST" "${GN_CMD[@]}" &
GN=$! # ip netns exec execs guestnetd: the same pid
PIDS+=("$GN")
for _ in $(seq 200); do busctl --address="unix:path=$DIR/bus" status org.guestnet1 >/dev/null 2>&1 && break; sleep 0.05; done
busctl --address="unix:path=$DIR/bus" status org.guestnet1 >/dev/null 2>&1 || fail "guestnetd did not start"
DRV=(/usr/bin/python3 scripts/bench-lifecycle.py --rounds "$ROUNDS" --many "$MANY" --scale-rounds "$SCALE_ROUNDS")
echo "bench-lifecycle: guestnetd" >&2
"${DRV[@]}" --scale "$SCALE" guestnet --bus "unix:path=$DIR/bus" --pid "$GN" >"$DIR/gn.json"
kill "$GN"; wait "$GN" 2>/dev/null || true

# ---- libvirtd, its network driver alone ---------------------------------------
if [[ $DO_LV == 1 ]]; then
    ip netns add "$LV"
    NSS+=("$LV")
    ip -n "$LV" link set lo up
    mkdir -p "$DIR/lv/drv"
    ln -s /usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_network.so "$DIR/lv/drv/"
    printf 'listen_tls = 0\nlisten_tcp = 0\nauth_unix_ro = "none"\nauth_unix_rw = "none"\n' >"$DIR/lv/libvirtd.conf"
    LV_STARTED=1
    LIBVIRT_DRIVER_DIR=$DIR/lv/drv ip netns exec "$LV" /usr/sbin/libvirtd \
        --config "$DIR/lv/libvirtd.conf" --pid-file "$DIR/lv/pid" >"$DIR/lv/log" 2>&1 &
    LVD=$!
    PIDS+=("$LVD")
    for _ in $(seq 200); do
        timeout 5 virsh -q -c network:///system net-list --all >/dev/null 2>&1 && break
        kill -0 "$LVD" 2>/dev/null || fail "libvirtd exited: $(tail -5 "$DIR/lv/log")"
        sleep 0.1
    done
    echo "bench-lifecycle: libvirtd" >&2
    "${DRV[@]}" --scale "$LV_SCALE" libvirt --netns "$LV" --prefix lvb >"$DIR/lv.json"
    lv_cleanup
    kill "$LVD"
    for _ in $(seq 50); do kill -0 "$LVD" 2>/dev/null || break; sleep 0.1; done
    LV_VERSION=$(/usr/sbin/libvirtd --version | awk '{print $NF}')
else
    echo '{}' >"$DIR/lv.json"
    LV_VERSION=-
fi

# ---- the tables ----------------------------------------------------------------
echo
echo "guestnet life-cycle benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores (nproc), shared machine"
/usr/bin/python3 scripts/bench-lifecycle.py table "$DIR/gn.json" "$DIR/lv.json" --lv-version "$LV_VERSION"
echo
echo "commands: sudo scripts/bench-lifecycle.sh (ROUNDS=$ROUNDS MANY=$MANY SCALE=$SCALE LV_SCALE=$LV_SCALE SCALE_ROUNDS=$SCALE_ROUNDS)"
echo "  guestnetd: ip netns exec <ns> ${GN_CMD[*]}"
echo "             driven by: ${DRV[*]} --scale $SCALE guestnet --bus <bus> --pid <guestnetd>"
if [[ $DO_LV == 1 ]]; then
    echo "  libvirtd:  LIBVIRT_DRIVER_DIR=<dir with libvirt_driver_network.so only> ip netns exec <ns> /usr/sbin/libvirtd --config <conf>"
    echo "             driven by: ${DRV[*]} --scale $LV_SCALE libvirt --netns <ns>"
fi

# ---- the root namespace, unchanged? -----------------------------------------------
set +e
lv_cleanup
for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
PIDS=()
for ns in "${NSS[@]}"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
done
NSS=()
root_state "$DIR/root.after"
echo
if diff -u "$DIR/root.before" "$DIR/root.after" >"$DIR/root.diff"; then
    echo "root namespace: unchanged after the run (ip -br link, nft -s list ruleset, iptables-save, ip6tables-save compared)"
else
    echo "root namespace: CHANGED during the run (other users of this machine, or this run?):"
    cat "$DIR/root.diff"
fi
