#!/bin/bash
# Load benchmarks (issue #6), each beside a peer measured in the same run:
#
#  networks  NETS (200) networks active at once: time to start them all and
#            stop them all through the D-Bus API, and guestnetd's resident
#            memory, beside NETS dnsmasq processes (what libvirt runs: one
#            per network) serving the same number of interfaces.
#  guests    GUESTS (1,000) guests attached to one network (AttachGuest,
#            veths into one namespace), all starting udhcpc at once: time
#            until every one holds a lease, and how many LeaseAdded signals
#            a bus client heard; then the same guests on a network whose
#            DHCP is dnsmasq (--enable-dbus, its DhcpLeaseAdded signal).
#  latency   ROUNDS (1,000) leases one after another, each timed from the
#            ACK reaching the client to the lease signal reaching a bus
#            client (guestnet-bench latency, one process, one clock), for
#            guestnetd and for dnsmasq with its lease file, as libvirt runs it.
#
# Everything runs in network namespaces of this script's own and on a
# private bus; nothing touches the machine's own namespace.
#
#   sudo scripts/bench-load.sh [--no-build] [networks|guests|latency ...]
#
# Environment: NETS, GUESTS, ROUNDS; KEEP=1 keeps the scratch directory
# (logs, lease files) for a look afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=1
if [[ "${1:-}" == "--no-build" ]]; then BUILD=0; shift; fi
PARTS=("$@")
[[ ${#PARTS[@]} -gt 0 ]] || PARTS=(networks guests latency)
NETS=${NETS:-200}
GUESTS=${GUESTS:-1000}
ROUNDS=${ROUNDS:-1000}
[[ $(id -u) == 0 ]] || { echo "bench-load: needs root (network namespaces)" >&2; exit 1; }
scripts/deps.sh # dnsmasq-base, busybox, python3 among them
DNSMASQ=$(command -v dnsmasq || echo /usr/sbin/dnsmasq)
if [[ $BUILD == 1 ]]; then cargo build --release --workspace --quiet; fi

ID=$$
HOST=gn-bload-$ID
DIR=$(mktemp -d /tmp/guestnet-bload.XXXXXX)
PIDS=()
NSS=("$HOST")
cleanup() {
    set +e
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    for ns in "${NSS[@]}"; do ip netns del "$ns" 2>/dev/null; done
    if [[ -n ${KEEP:-} ]]; then echo "kept $DIR" >&2; else rm -rf "$DIR"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fail() { echo "bench-load: $*" >&2; exit 1; }
now() { date +%s%N; }
secs() { awk "BEGIN{printf \"%.2f\", ($2 - $1) / 1e9}"; }
rss_mb() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
# The sum over PIDS of resident and proportional (shared pages split) memory.
sum_mem_mb() {
    local rss=0 pss=0 p
    for p in "$@"; do
        rss=$((rss + $(awk '/^Rss:/ {print $2}' "/proc/$p/smaps_rollup")))
        pss=$((pss + $(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup")))
    done
    awk "BEGIN{printf \"%.1f / %.1f\", $rss/1024, $pss/1024}"
}

# ---- the host namespace, a private bus, guestnetd ---------------------------
ip netns add "$HOST"
ip -n "$HOST" link set lo up
ip -n "$HOST" link add up0 type dummy 2>/dev/null || ip -n "$HOST" link add up0 type veth peer name up1
ip -n "$HOST" addr add 10.200.0.1/24 dev up0
ip -n "$HOST" link set up0 up
# dnsmasq --enable-dbus owns its well-known name on the same bus.
cat > "$DIR/dnsmasq-bus.conf" <<'EOF'
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><policy user="root"><allow own="uk.org.thekelleys.dnsmasq"/></policy></busconfig>
EOF
sed -e "s|@LISTEN@|unix:path=$DIR/bus|" -e "s|@POLICY@|$PWD/dbus/data/org.guestnet1.conf|" \
    -e "s|</busconfig>|<include>$DIR/dnsmasq-bus.conf</include></busconfig>|" \
    scripts/private-bus.conf.in > "$DIR/bus.conf"
dbus-daemon --config-file="$DIR/bus.conf" --nofork --nopidfile &
PIDS+=($!)
for _ in $(seq 100); do [[ -S $DIR/bus ]] && break; sleep 0.05; done
BUS="unix:path=$DIR/bus"
echo "nameserver 10.200.0.2" > "$DIR/resolv.conf"
GUESTNET_LOG=warn,netlink_packet_route=error ip netns exec "$HOST" target/release/guestnetd --bus-address "$BUS" \
    --config-dir "$DIR/etc" --state-dir "$DIR/state" --runtime-dir "$DIR/run" \
    --resolv-conf "$DIR/resolv.conf" &
PIDS+=($!)
B=(busctl --address="$BUS")
for _ in $(seq 200); do "${B[@]}" status org.guestnet1 >/dev/null 2>&1 && break; sleep 0.05; done
GN_PID=$(pgrep -f "target/release/guestnetd --bus-address $BUS" | head -1)
[[ -n $GN_PID ]] || fail "guestnetd did not start"
MGR=(org.guestnet1 /org/guestnet1 org.guestnet1.Manager)
net() { echo "/org/guestnet1/network/$1"; }
define() { "${B[@]}" call "${MGR[@]}" DefineNetwork s "$1" >/dev/null; }
netcall() { "${B[@]}" call org.guestnet1 "$(net "$1")" org.guestnet1.Network "${@:2}"; }

# new_guest_ns NAME: a namespace for guests, cleaned up at exit.
new_guest_ns() {
    ip netns add "$1"
    NSS+=("$1")
    ip -n "$1" link set lo up
    # The guests speak IPv4 only: their IPv6 chatter (solicitations,
    # multicast reports) would flood the bridge a thousand times over and
    # starve both servers alike on two cores.
    ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}
# attach_many NETWORK NS COUNT: COUNT veths g0..g(COUNT-1) into NS.
attach_many() {
    local i
    for ((i = 0; i < $3; i++)); do
        "${B[@]}" call org.guestnet1 "$(net "$1")" org.guestnet1.Network AttachGuest 'sa{sv}' \
            "g$i" 3 kind s veth netns s "/run/netns/$2" ifname s "g$i" >/dev/null
    done
    # The guest ends come down, as a container's eth0 does; its runtime
    # brings them up.
    for ((i = 0; i < $3; i++)); do echo "link set g$i up"; done > "$DIR/up.batch"
    ip -n "$2" -batch "$DIR/up.batch"
}
# start_dnsmasq NAME ARGS...: dnsmasq in the host namespace, on the bus.
start_dnsmasq() {
    local name=$1
    shift
    DBUS_SYSTEM_BUS_ADDRESS=$BUS ip netns exec "$HOST" "$DNSMASQ" --keep-in-foreground \
        --conf-file=/dev/null --no-resolv --no-hosts --user=root --pid-file= \
        --bind-interfaces --except-interface=lo "$@" >"$DIR/$name.log" 2>&1 &
    DM_PID=$!
    PIDS+=($DM_PID)
}

declare -A R # results, printed at the end

# ---- networks ------------------------------------------------------------------
bench_networks() {
    echo "== $NETS networks" >&2
    local i t0 t1 t2
    for ((i = 0; i < NETS; i++)); do
        define "$(printf 'name = "n%d"\nmode = "nat"\n[ipv4]\naddress = "10.%d.%d.1/24"\n' \
            "$i" $((120 + i / 250)) $((i % 250)))"
    done
    t0=$(now)
    for ((i = 0; i < NETS; i++)); do netcall "n$i" Start; done
    t1=$(now)
    R[nets_rss]=$(rss_mb "$GN_PID")
    R[nets_mem]=$(sum_mem_mb "$GN_PID")
    for ((i = 0; i < NETS; i++)); do netcall "n$i" Stop; done
    t2=$(now)
    R[nets_start]=$(secs "$t0" "$t1")
    R[nets_stop]=$(secs "$t1" "$t2")
    for ((i = 0; i < NETS; i++)); do netcall "n$i" Undefine; done

    # The peer: NETS dnsmasq processes, DHCP and DNS, one per interface
    # (bridges, as libvirt's; no dummy module on this machine).
    local ns=gn-bload-dm-$ID pids=()
    new_guest_ns "$ns"
    for ((i = 0; i < NETS; i++)); do
        echo "link add d$i type bridge"
        echo "address add 10.$((120 + i / 250)).$((i % 250)).1/24 dev d$i"
        echo "link set d$i up"
    done > "$DIR/dummies.batch"
    ip -n "$ns" -batch "$DIR/dummies.batch"
    t0=$(now)
    for ((i = 0; i < NETS; i++)); do
        local sub=10.$((120 + i / 250)).$((i % 250))
        ip netns exec "$ns" "$DNSMASQ" --conf-file=/dev/null --no-resolv --no-hosts \
            --user=root --pid-file="$DIR/dm$i.pid" --bind-interfaces --except-interface=lo \
            --interface="d$i" --listen-address="$sub.1" \
            --dhcp-range="$sub.10,$sub.254,1h" --dhcp-leasefile="$DIR/dm$i.leases"
    done
    t1=$(now)
    for ((i = 0; i < NETS; i++)); do pids+=("$(cat "$DIR/dm$i.pid")"); done
    R[dm_mem]=$(sum_mem_mb "${pids[@]}")
    R[dm_start]=$(secs "$t0" "$t1")
    kill "${pids[@]}"
}

# ---- guests ----------------------------------------------------------------------
# dhcp_crowd NS: GUESTS udhcpc at once in NS; prints seconds until all hold a
# lease and the number that did (each quits once bound; -s true: the lease is
# the point, not configuring the interface).
dhcp_crowd() {
    local ns=$1 t0 t1
    cat > "$DIR/crowd.sh" <<EOF
for i in \$(seq 0 $((GUESTS - 1))); do
    (busybox udhcpc -i g\$i -f -q -n -t 10 -T 2 -s /bin/true >>$DIR/$ns.udhcpc.log 2>&1 && echo g\$i >> $DIR/$ns.bound) &
done
wait
EOF
    : > "$DIR/$ns.bound"
    t0=$(now)
    ip netns exec "$ns" sh "$DIR/crowd.sh"
    t1=$(now)
    echo "$(secs "$t0" "$t1") $(wc -l < "$DIR/$ns.bound") $t0"
}

# watch_signals SERVER LOG: a bus client counting lease signals, in the background.
watch_signals() {
    rm -f "$DIR/ready"
    target/release/guestnet-bench --bus "$BUS" --server "$1" watch --count "$GUESTS" \
        --timeout-secs 300 --ready "$DIR/ready" > "$2" &
    WATCH_PID=$!
    for _ in $(seq 100); do [[ -e $DIR/ready ]] && break; sleep 0.05; done
    [[ -e $DIR/ready ]] || fail "the signal watcher did not subscribe"
}

# stop_watch: the clients are done; signals still in flight get 5 s.
stop_watch() {
    for _ in $(seq 50); do kill -0 "$WATCH_PID" 2>/dev/null || break; sleep 0.1; done
    kill -TERM "$WATCH_PID" 2>/dev/null || true
    wait "$WATCH_PID" || true
}

bench_guests() {
    echo "== $GUESTS guests on one network" >&2
    local ns=gn-bload-crowd-$ID out t0 t1
    new_guest_ns "$ns"
    define $'name = "crowd"\nmode = "isolated"\n[ipv4]\naddress = "10.96.0.1/21"'
    netcall crowd Start
    t0=$(now)
    attach_many crowd "$ns" "$GUESTS"
    t1=$(now)
    R[attach]=$(secs "$t0" "$t1")
    R[gn_rss_guests]=$(rss_mb "$GN_PID")
    watch_signals guestnet "$DIR/watch-gn.json"
    read -r R[gn_crowd] R[gn_bound] t0 < <(dhcp_crowd "$ns")
    stop_watch
    R[gn_signals]=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['clients'])" "$DIR/watch-gn.json")
    R[gn_last_signal]=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('%.2f' % ((d['last_signal_unix_ns'] - $t0) / 1e9))" "$DIR/watch-gn.json")
    R[gn_listed]=$(netcall crowd ListLeases | awk '{print $2}')
    R[gn_rss_leases]=$(rss_mb "$GN_PID")
    t0=$(now)
    netcall crowd Stop
    t1=$(now)
    R[stop_guests]=$(secs "$t0" "$t1")

    echo "== $GUESTS guests, dnsmasq serving DHCP" >&2
    ns=gn-bload-crowddm-$ID
    new_guest_ns "$ns"
    define $'name = "crowddm"\nmode = "isolated"\n[ipv4]\naddress = "10.104.0.1/21"\ndhcp = false'
    netcall crowddm Start
    attach_many crowddm "$ns" "$GUESTS"
    local br
    br=$("${B[@]}" get-property org.guestnet1 "$(net crowddm)" org.guestnet1.Network Bridge | awk -F'"' '{print $2}')
    start_dnsmasq crowddm --interface="$br" --port=0 --enable-dbus \
        --dhcp-range=10.104.0.10,10.104.7.254,1h --dhcp-leasefile="$DIR/crowddm.leases" \
        --dhcp-authoritative --no-ping --dhcp-lease-max=5000
    sleep 0.5
    watch_signals dnsmasq "$DIR/watch-dm.json"
    read -r R[dm_crowd] R[dm_bound] t0 < <(dhcp_crowd "$ns")
    stop_watch
    R[dm_signals]=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['clients'])" "$DIR/watch-dm.json")
    R[dm_last_signal]=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('%.2f' % ((d['last_signal_unix_ns'] - $t0) / 1e9))" "$DIR/watch-dm.json")
    kill "$DM_PID"
    netcall crowddm Stop
}

# ---- latency ---------------------------------------------------------------------
# latency_probe NETWORK SUBNET(a.b.c) SERVER: ROUNDS leases through a relay
# at SUBNET.2 in the guest namespace gn-bload-NETWORK-ID; prints the
# probe's JSON. (Run in a subshell: the namespace is made by the caller.)
latency_probe() {
    local ns=gn-bload-$1-$ID
    "${B[@]}" call org.guestnet1 "$(net "$1")" org.guestnet1.Network AttachGuest 'sa{sv}' \
        probe 3 kind s veth netns s "/run/netns/$ns" ifname s eth0 >/dev/null
    ip -n "$ns" addr add "$2.2/21" dev eth0
    ip -n "$ns" link set eth0 up
    sleep 0.3
    ip netns exec "$ns" target/release/guestnet-bench --bus "$BUS" --server "$3" \
        latency --relay "$2.2" --dhcp-server "$2.1" --rounds "$ROUNDS"
}

pct_line() {
    python3 -c "
import json,sys
d=json.loads(sys.argv[1]); s=d['signal_after_ack_us']
print('%d %d %d %d %d %.0f' % (s['p50'], s['p90'], s['p99'], s['max'], d['signal_before_ack'], d['leases_per_s']))" "$1"
}

bench_latency() {
    echo "== lease-to-signal latency, $ROUNDS leases" >&2
    define $'name = "lat"\nmode = "isolated"\n[ipv4]\naddress = "10.112.0.1/21"\ndhcp = { start = "10.112.1.0", end = "10.112.6.255", max_leases_per_port = 65536 }'
    netcall lat Start
    new_guest_ns "gn-bload-lat-$ID"
    R[gn_lat]=$(pct_line "$(latency_probe lat 10.112.0 guestnet)")
    netcall lat Stop

    define $'name = "latdm"\nmode = "isolated"\n[ipv4]\naddress = "10.120.0.1/21"\ndhcp = false'
    netcall latdm Start
    new_guest_ns "gn-bload-latdm-$ID"
    local br
    br=$("${B[@]}" get-property org.guestnet1 "$(net latdm)" org.guestnet1.Network Bridge | awk -F'"' '{print $2}')
    start_dnsmasq latdm --interface="$br" --port=0 --enable-dbus \
        --dhcp-range=10.120.1.0,10.120.6.255,1h --dhcp-leasefile="$DIR/latdm.leases" --no-ping
    sleep 0.5
    R[dm_lat]=$(pct_line "$(latency_probe latdm 10.120.0 dnsmasq)")
    kill "$DM_PID"
    netcall latdm Stop
}

for part in "${PARTS[@]}"; do
    case $part in
        networks) bench_networks ;;
        guests) bench_guests ;;
        latency) bench_latency ;;
        *) fail "unknown part $part (networks, guests, latency)" ;;
    esac
done

# ---- report ------------------------------------------------------------------------
echo
if [[ -n ${R[nets_start]:-} ]]; then
    printf '%-52s %16s %18s\n' "$NETS networks at once" "guestnetd" "$NETS x dnsmasq"
    printf '%-52s %14s s %18s\n' "start all, in sequence, through busctl" "${R[nets_start]}" "(${R[dm_start]} s to launch)"
    printf '%-52s %14s s %18s\n' "stop all, in sequence, through busctl" "${R[nets_stop]}" "-"
    printf '%-52s %13s MB %15s MB\n' "memory, resident / proportional (RSS / PSS)" "${R[nets_mem]}" "${R[dm_mem]}"
    echo "  (libvirt runs one dnsmasq per network beside libvirtd; DESIGN.md: 192 MB for 50)"
    echo
fi
if [[ -n ${R[gn_crowd]:-} ]]; then
    printf '%-52s %16s %18s\n' "$GUESTS guests on one network, udhcpc all at once" "guestnetd" "dnsmasq"
    printf '%-52s %14s s %18s\n' "until every guest holds a lease" "${R[gn_crowd]}" "${R[dm_crowd]} s"
    printf '%-52s %16s %18s\n' "guests that got one" "${R[gn_bound]}/$GUESTS" "${R[dm_bound]}/$GUESTS"
    printf '%-52s %16s %18s\n' "lease-added signals heard (distinct clients)" "${R[gn_signals]}/$GUESTS" "${R[dm_signals]}/$GUESTS"
    printf '%-52s %14s s %18s\n' "last signal, after the start" "${R[gn_last_signal]}" "${R[dm_last_signal]} s"
    printf '%-52s %16s\n' "leases listed by ListLeases" "${R[gn_listed]}"
    printf '%-52s %14s s\n' "attach $GUESTS guests (AttachGuest veth, busctl each)" "${R[attach]}"
    printf '%-52s %14s s\n' "stop the network with $GUESTS guests" "${R[stop_guests]}"
    printf '%-52s %13s MB\n' "guestnetd resident memory: guests / + leases" "${R[gn_rss_guests]} / ${R[gn_rss_leases]}"
    echo
fi
if [[ -n ${R[gn_lat]:-} ]]; then
    read -r g50 g90 g99 gmax gbefore grate <<< "${R[gn_lat]}"
    read -r d50 d90 d99 dmax dbefore drate <<< "${R[dm_lat]}"
    printf '%-52s %16s %18s\n' "ACK to lease signal, $ROUNDS leases in turn" "guestnetd" "dnsmasq"
    printf '%-52s %13s us %15s us\n' "median" "$g50" "$d50"
    printf '%-52s %13s us %15s us\n' "90th percentile" "$g90" "$d90"
    printf '%-52s %13s us %15s us\n' "99th percentile" "$g99" "$d99"
    printf '%-52s %13s us %15s us\n' "worst" "$gmax" "$dmax"
    printf '%-52s %16s %18s\n' "signal before the ACK (count)" "$gbefore" "$dbefore"
    printf '%-52s %14s/s %16s/s\n' "leases in turn (DORA and signal)" "$grate" "$drate"
    echo "  (libvirt: no signal; tools poll, 3.1 s from client start to lease visible, DESIGN.md)"
fi
echo "dnsmasq $("$DNSMASQ" --version | head -1 | awk "{print \$3}"): --no-ping (no 3 s ping before offering); lease files on disk."
echo "command: sudo NETS=$NETS GUESTS=$GUESTS ROUNDS=$ROUNDS scripts/bench-load.sh ${PARTS[*]}"
