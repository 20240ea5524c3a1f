#!/bin/bash
# Runs guestnetd in a sandbox: a network namespace "host" with an uplink to a
# namespace "lan", a private dbus-daemon that loads guestnet's own bus
# policy, and a network "default" (nat, autostart) ready to use. Nothing here
# touches the machine's own network namespace. Ctrl-C stops it all.
#
#   sudo scripts/sandbox.sh [--release]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PROFILE=debug
CARGO_FLAGS=()
if [[ "${1:-}" == "--release" ]]; then PROFILE=release; CARGO_FLAGS=(--release); fi

if [[ $(id -u) != 0 ]]; then
    echo "sandbox.sh: needs root (network namespaces, nftables)" >&2
    exit 1
fi
scripts/deps.sh
cargo build "${CARGO_FLAGS[@]}" --workspace --quiet

ID=$$
HOST=gn-sandbox-$ID-host
LAN=gn-sandbox-$ID-lan
DIR=$(mktemp -d /tmp/guestnet-sandbox.XXXXXX)
PIDS=()

cleanup() {
    set +e
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    wait 2>/dev/null
    ip netns del "$HOST" 2>/dev/null
    ip netns del "$LAN" 2>/dev/null
    rm -rf "$DIR"
    echo "sandbox: stopped and cleaned up"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# The world: host <-> lan, the lan holds the host's default gateway.
ip netns add "$HOST"
ip netns add "$LAN"
ip -n "$HOST" link set lo up
ip -n "$LAN" link set lo up
ip -n "$HOST" link add up0 type veth peer name eth0 netns "$LAN"
ip -n "$HOST" addr add 10.200.0.1/24 dev up0
ip -n "$LAN" addr add 10.200.0.2/24 dev eth0
ip -n "$HOST" link set up0 up
ip -n "$LAN" link set eth0 up
ip -n "$HOST" route add default via 10.200.0.2

# A private bus with the policy guestnet ships.
sed -e "s|@LISTEN@|unix:path=$DIR/bus|" -e "s|@POLICY@|$ROOT/dbus/data/org.guestnet1.conf|" \
    scripts/private-bus.conf.in > "$DIR/bus.conf"
dbus-daemon --config-file="$DIR/bus.conf" --nofork --nopidfile &
PIDS+=($!)
for _ in $(seq 100); do [[ -S $DIR/bus ]] && break; sleep 0.05; done

mkdir -p "$DIR/etc"
cat > "$DIR/etc/default.toml" <<EOF
name = "default"
mode = "nat"
autostart = true
[dns]
domain = "guest.lan"
EOF

ip netns exec "$HOST" "target/$PROFILE/guestnetd" \
    --bus-address "unix:path=$DIR/bus" \
    --config-dir "$DIR/etc" --state-dir "$DIR/state" --runtime-dir "$DIR/run" \
    --modes-dir "$PWD/target/$PROFILE" &
PIDS+=($!)

BUS="unix:path=$DIR/bus"
for _ in $(seq 200); do
    busctl --address="$BUS" status org.guestnet1 >/dev/null 2>&1 && break
    sleep 0.05
done

cat <<EOF

guestnetd is running in network namespace $HOST, on a private bus.
Talk to it:

  target/$PROFILE/guestnetctl --bus-address $BUS list
  target/$PROFILE/guestnetctl --bus-address $BUS --json monitor
  busctl --address=$BUS tree org.guestnet1
  busctl --address=$BUS call org.guestnet1 /org/guestnet1 org.guestnet1.Manager ListNetworks
  busctl --address=$BUS get-property org.guestnet1 /org/guestnet1/network/default org.guestnet1.Network Addresses
  gdbus call --address $BUS --dest org.guestnet1 --object-path /org/guestnet1 --method org.guestnet1.Manager.CreateNetwork 'name = "lab"
mode = "isolated"'
  ip netns exec $HOST ip addr          # the bridges guestnet made
  ip netns exec $HOST nft list ruleset # its firewall table

Ctrl-C stops guestnetd and removes the sandbox.
EOF
wait "${PIDS[1]}"
