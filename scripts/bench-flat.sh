#!/bin/bash
# How a network's start and stop cost grows with the number of active
# networks: the median of ROUNDS starts and stops of one NAT network with
# no other network active, then with MANY other NAT networks active. All in
# a network namespace of its own (nothing in the root namespace).
#
#   sudo [GUESTNETD=path] [MANY=200] scripts/bench-flat.sh [ROUNDS]   (ROUNDS: 20)
#
# GUESTNETD picks the binary (default target/release/guestnetd, built if
# missing), so two builds can be compared.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-20}
MANY=${MANY:-200}
BIN=${GUESTNETD:-target/release/guestnetd}
MODES=${MODES:-$(dirname "$BIN")}
[[ $(id -u) == 0 ]] || { echo "bench-flat: needs root" >&2; exit 1; }
[[ -x $BIN ]] || cargo build --release -p guestnetd --quiet

ID=$$
HOST=gn-benchflat-$ID
DIR=$(mktemp -d /tmp/guestnet-benchflat.XXXXXX)
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
GUESTNET_LOG=warn ip netns exec "$HOST" "$BIN" --bus-address "unix:path=$DIR/bus" \
    --config-dir "$DIR/etc" --state-dir "$DIR/state" --runtime-dir "$DIR/run" \
    --modes-dir "$MODES" --resolv-conf "$DIR/resolv.conf" &
PIDS+=($!)
B=(busctl --address="unix:path=$DIR/bus")
for _ in $(seq 200); do "${B[@]}" status org.guestnet1 >/dev/null 2>&1 && break; sleep 0.05; done

ms() { awk "BEGIN{printf \"%.1f\", ($2 - $1) / 1000000}"; }
now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

"${B[@]}" call org.guestnet1 /org/guestnet1 org.guestnet1.Manager DefineNetwork s \
    $'name = "probe"\nmode = "nat"\n[ipv4]\naddress = "10.70.0.1/24"' >/dev/null
P=/org/guestnet1/network/probe
measure() {
    local starts=() stops=() t0 t1 t2
    for _ in $(seq "$ROUNDS"); do
        t0=$(now); "${B[@]}" call org.guestnet1 $P org.guestnet1.Network Start; t1=$(now)
        "${B[@]}" call org.guestnet1 $P org.guestnet1.Network Stop; t2=$(now)
        starts+=("$(ms "$t0" "$t1")"); stops+=("$(ms "$t1" "$t2")")
    done
    echo "$(printf '%s\n' "${starts[@]}" | median) $(printf '%s\n' "${stops[@]}" | median)"
}
read -r start1 stop1 < <(measure)
for i in $(seq "$MANY"); do
    "${B[@]}" call org.guestnet1 /org/guestnet1 org.guestnet1.Manager DefineNetwork s \
        "$(printf 'name = "m%d"\nmode = "nat"\n[ipv4]\naddress = "10.%d.%d.1/24"\n' "$i" $((100 + i / 200)) $((i % 200)))" >/dev/null
    "${B[@]}" call org.guestnet1 /org/guestnet1/network/m$i org.guestnet1.Network Start
done
read -r startn stopn < <(measure)

printf '\n%-48s %10s %10s\n' "NAT network, median of $ROUNDS (busctl included)" "start ms" "stop ms"
printf '%-48s %10s %10s\n' "no other network active" "$start1" "$stop1"
printf '%-48s %10s %10s\n' "$MANY other networks active" "$startn" "$stopn"
printf '%-48s %10s %10s\n' "ratio" "$(awk "BEGIN{printf \"%.2fx\", $startn/$start1}")" \
    "$(awk "BEGIN{printf \"%.2fx\", $stopn/$stop1}")"
echo "binary: $BIN; $(nproc) cores; command: sudo GUESTNETD=$BIN MANY=$MANY scripts/bench-flat.sh $ROUNDS"
