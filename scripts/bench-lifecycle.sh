#!/bin/bash
# Times network start and stop through the D-Bus API, and guestnetd's
# resident memory, in namespaces of its own; prints the figures beside
# libvirt's from DESIGN.md (libvirtd cannot run on this machine: no
# systemd, no libvirt packages in the image; its figures were measured on
# the same kind of machine).
#
#   sudo scripts/bench-lifecycle.sh [--no-build] [ROUNDS]   (ROUNDS: 30)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=1
if [[ "${1:-}" == "--no-build" ]]; then BUILD=0; shift; fi
ROUNDS=${1:-30}
MANY=${MANY:-50}
[[ $(id -u) == 0 ]] || { echo "bench-lifecycle: needs root" >&2; exit 1; }
scripts/deps.sh
if [[ $BUILD == 1 ]]; then cargo build --release --workspace --quiet; fi

ID=$$
HOST=gn-benchlc-$ID
DIR=$(mktemp -d /tmp/guestnet-benchlc.XXXXXX)
PIDS=()
cleanup() {
    set +e
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    ip netns del "$HOST" 2>/dev/null
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ip netns add "$HOST"
ip -n "$HOST" link set lo up
ip -n "$HOST" link add up0 type dummy 2>/dev/null || ip -n "$HOST" link add up0 type veth peer name up1
ip -n "$HOST" addr add 10.200.0.1/24 dev up0
ip -n "$HOST" link set up0 up
sed -e "s|@LISTEN@|unix:path=$DIR/bus|" -e "s|@POLICY@|$PWD/dbus/data/org.guestnet1.conf|" \
    scripts/private-bus.conf.in > "$DIR/bus.conf"
dbus-daemon --config-file="$DIR/bus.conf" --nofork --nopidfile &
PIDS+=($!)
for _ in $(seq 100); do [[ -S $DIR/bus ]] && break; sleep 0.05; done
echo "nameserver 10.200.0.2" > "$DIR/resolv.conf"
GUESTNET_LOG=warn ip netns exec "$HOST" target/release/guestnetd --bus-address "unix:path=$DIR/bus" \
    --config-dir "$DIR/etc" --state-dir "$DIR/state" --runtime-dir "$DIR/run" \
    --resolv-conf "$DIR/resolv.conf" --modes-dir target/release &
GN=$!
PIDS+=($GN)
B=(busctl --address="unix:path=$DIR/bus")
for _ in $(seq 200); do "${B[@]}" status org.guestnet1 >/dev/null 2>&1 && break; sleep 0.05; done

ms() { echo $(( ($2 - $1) / 1000000 )); }
now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
gn_pid=$(pgrep -f "target/release/guestnetd --bus-address unix:path=$DIR/bus" | head -1)
rss_mb() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$gn_pid/status"; }
threads() { awk '/^Threads/ {print $2}' "/proc/$gn_pid/status"; }
sleep 0.5
rss0=$(rss_mb)

"${B[@]}" call org.guestnet1 /org/guestnet1 org.guestnet1.Manager DefineNetwork s \
    $'name = "lc"\nmode = "nat"\n[ipv4]\naddress = "10.70.0.1/24"\n[dns]\ndomain = "lc.lan"' >/dev/null
P=/org/guestnet1/network/lc
starts=(); stops=()
for _ in $(seq "$ROUNDS"); do
    t0=$(now); "${B[@]}" call org.guestnet1 $P org.guestnet1.Network Start; t1=$(now)
    "${B[@]}" call org.guestnet1 $P org.guestnet1.Network Stop; t2=$(now)
    starts+=("$(ms "$t0" "$t1")"); stops+=("$(ms "$t1" "$t2")")
done
start_med=$(printf '%s\n' "${starts[@]}" | median)
stop_med=$(printf '%s\n' "${stops[@]}" | median)
"${B[@]}" call org.guestnet1 $P org.guestnet1.Network Start
rss1=$(rss_mb)
"${B[@]}" call org.guestnet1 $P org.guestnet1.Network Stop

for i in $(seq "$MANY"); do
    "${B[@]}" call org.guestnet1 /org/guestnet1 org.guestnet1.Manager DefineNetwork s \
        "$(printf 'name = "m%d"\nmode = "nat"\n[ipv4]\naddress = "10.%d.%d.1/24"\n' "$i" $((100 + i / 200)) $((i % 200)))" >/dev/null
done
t0=$(now)
for i in $(seq "$MANY"); do "${B[@]}" call org.guestnet1 /org/guestnet1/network/m$i org.guestnet1.Network Start; done
t1=$(now)
rss50=$(rss_mb)
threads50=$(threads)
for i in $(seq "$MANY"); do "${B[@]}" call org.guestnet1 /org/guestnet1/network/m$i org.guestnet1.Network Stop; done
t2=$(now)

printf '\n%-44s %12s %14s\n' "figure (busctl round trip included)" "guestnetd" "libvirt 9.0*"
printf '%-44s %12s %14s\n' "--------------------------------------------" "---------" "------------"
printf '%-44s %9s ms %11s ms\n' "start one NAT network, median of $ROUNDS" "$start_med" 157
printf '%-44s %9s ms %11s ms\n' "stop one NAT network, median of $ROUNDS" "$stop_med" 444
printf '%-44s %10s s %12s s\n' "start $MANY networks in sequence" "$(awk "BEGIN{printf \"%.2f\", $(ms "$t0" "$t1")/1000}")" 8.0
printf '%-44s %10s s %12s s\n' "stop $MANY networks in sequence" "$(awk "BEGIN{printf \"%.2f\", $(ms "$t1" "$t2")/1000}")" 22.7
printf '%-44s %9s MB %14s\n' "resident memory, idle (no network)" "$rss0" "-"
printf '%-44s %9s MB %11s MB\n' "resident memory, 1 active network" "$rss1" 25.5
printf '%-44s %9s MB %11s MB\n' "resident memory, $MANY active networks" "$rss50" 192
printf '%-44s %12s %14s\n' "threads, $MANY active networks" "$threads50" "-"
echo
echo "* libvirt's figures are DESIGN.md's (libvirtd cannot run here); guestnetd's each include"
echo "  one busctl process start (a few ms). Each network: bridge, address, nft table update,"
echo "  ip_forward, a DHCP server with its journal and a DNS server (UDP and TCP)."
echo "command: sudo scripts/bench-lifecycle.sh $ROUNDS (MANY=$MANY)"
