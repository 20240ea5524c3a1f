#!/bin/bash
# Benchmarks guestnet's own DHCP and DNS servers against Kea and dnsmasq,
# side by side on this machine, in one run:
#
#   DHCP  Kea's perfdhcp (DORA exchanges per second, a fixed set of clients,
#         speaking as a relay agent) against guestnetd, against Kea 2.2's
#         DHCPv4 server with its memfile lease database (persisted: appended,
#         not synced), against dnsmasq with its lease file on disk, and
#         against dnsmasq with --leasefile-ro;
#   DNS   dnsperf (queries per second) against guestnetd's DNS and against
#         dnsmasq answering the same names, with the same query file.
#
# Every server serves an identical /16 pool on an identical bridge
# (10.88.0.1/16) in a network namespace of its own; the load generator runs
# in another namespace whose veth is on that bridge (10.88.0.2/16). Nothing
# touches the machine's own network namespace; all traffic stays between the
# namespaces made here, and every run is bounded in time. Namespaces,
# processes and files are removed at the end, also on Ctrl-C.
#
#   sudo scripts/bench-dhcp-dns.sh [--no-build] [--dhcp-only | --dns-only]
#
# Knobs (environment): CLIENTS (perfdhcp -R, 10000); RATES (perfdhcp -r, one
# run each, the best counts: "2000 5000 20000 40000"); DHCP_SECONDS (perfdhcp -p,
# 10); DNS_SECONDS (dnsperf -l, 10); DNS_CLIENTS (dnsperf -c, 4);
# DNS_OUTSTANDING (dnsperf -q, 100); HOSTS (local names, 100); NX (NXDOMAIN
# queries per 100 local ones, 20); GUESTNETD (the binary; default
# target/release/guestnetd, built here); GUESTNET_MODES_DIR.
#
# Exits non-zero only when the setup fails (a tool missing, a namespace, a
# server that does not start); a figure that cannot be measured is printed
# as n/a with the reason, never a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

BUILD=1
DO_DHCP=1
DO_DNS=1
for arg in "$@"; do
    case "$arg" in
        --no-build) BUILD=0 ;;
        --dhcp-only) DO_DNS=0 ;;
        --dns-only) DO_DHCP=0 ;;
        -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
        *) echo "bench: unknown argument $arg" >&2; exit 2 ;;
    esac
done

CLIENTS=${CLIENTS:-10000}
RATES=${RATES:-2000 5000 20000 40000}
DHCP_SECONDS=${DHCP_SECONDS:-10}
DNS_SECONDS=${DNS_SECONDS:-10}
DNS_CLIENTS=${DNS_CLIENTS:-4}
DNS_OUTSTANDING=${DNS_OUTSTANDING:-100}
HOSTS=${HOSTS:-100}
NX=${NX:-20}

SERVER_ADDR=10.88.0.1
CLIENT_ADDR=10.88.0.2
PREFIX=16
POOL_START=10.88.8.1
POOL_END=10.88.255.254
LEASE_SECONDS=3600
DOMAIN=bench.lan

fail() {
    echo "bench: setup failed: $*" >&2
    exit 1
}

[[ $(id -u) == 0 ]] || fail "needs root (network namespaces)"

# ---- tools ----------------------------------------------------------------
scripts/deps.sh
need_pkgs=""
command -v perfdhcp >/dev/null || [[ -x /usr/sbin/perfdhcp ]] || need_pkgs+=" kea-admin"
command -v dnsperf >/dev/null || need_pkgs+=" dnsperf"
# Kea's server: installed by scripts/deps-bench.sh where no systemd runs
# (its package would start a Kea service on the machine itself); without
# it, Kea's figure is n/a.
scripts/deps-bench.sh || echo "bench: scripts/deps-bench.sh failed; going on with what is installed" >&2
KEA=$(command -v kea-dhcp4 || echo /usr/sbin/kea-dhcp4)
# dnsmasq-base: the binary alone; the "dnsmasq" package would also start a
# system-wide dnsmasq service in the machine's own namespace.
command -v dnsmasq >/dev/null || [[ -x /usr/sbin/dnsmasq ]] || need_pkgs+=" dnsmasq-base"
if [[ -n $need_pkgs ]]; then
    echo "bench: installing$need_pkgs" >&2
    apt-get update -qq || fail "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need_pkgs >/dev/null \
        || fail "apt-get install$need_pkgs"
fi
PERFDHCP=$(command -v perfdhcp || echo /usr/sbin/perfdhcp)
DNSMASQ=$(command -v dnsmasq || echo /usr/sbin/dnsmasq)
DNSPERF=$(command -v dnsperf)
for t in ip busctl dbus-daemon dig timeout awk; do
    command -v "$t" >/dev/null || fail "$t is missing"
done

if [[ -z ${GUESTNETD:-} ]]; then
    if [[ $BUILD == 1 ]]; then
        echo "bench: building guestnetd (release)" >&2
        cargo build --release --quiet -p guestnetd -p guestnet-mode-isolated \
            || fail "cargo build --release -p guestnetd"
    fi
    GUESTNETD=$ROOT/target/release/guestnetd
fi
[[ -x $GUESTNETD ]] || fail "no guestnetd at $GUESTNETD (build it, or set GUESTNETD)"
MODES_DIR=${GUESTNET_MODES_DIR:-$(dirname "$GUESTNETD")}
ls "$MODES_DIR"/libguestnet_mode_isolated.so >/dev/null 2>&1 \
    || fail "no libguestnet_mode_isolated.so in $MODES_DIR (set GUESTNET_MODES_DIR)"

# ---- the world, and its cleanup ---------------------------------------------
ID=$$
DIR=$(mktemp -d /var/tmp/guestnet-bench.XXXXXX) # on disk: lease files are written here
NSS=()
PIDS=()

cleanup() {
    set +e
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    for ns in "${NSS[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop PID: ends one process this script started, and forgets it.
stop() {
    local pid=$1 keep=() p
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# mkns ROLE: makes namespace gnb<pid>-ROLE (lo up), its name in NS.
# (These helpers set globals rather than print: a $(...) subshell could not
# record the namespace for the cleanup.)
mkns() {
    NS="gnb$ID-$1"
    ip netns add "$NS" || fail "ip netns add $NS"
    NSS+=("$NS")
    ip -n "$NS" link set lo up || fail "lo up in $NS"
}

# client_ns SERVER_NS BRIDGE ROLE: a load-generator namespace whose eth0 is
# on BRIDGE in SERVER_NS, with CLIENT_ADDR; its name in CL.
client_ns() {
    local srv=$1 br=$2
    mkns "$3"
    CL=$NS
    ip -n "$srv" link add vbench type veth peer name eth0 netns "$CL" || fail "veth in $srv"
    ip -n "$srv" link set vbench master "$br" up || fail "enslave vbench to $br"
    ip -n "$CL" addr add "$CLIENT_ADDR/$PREFIX" dev eth0 || fail "address in $CL"
    ip -n "$CL" link set eth0 up || fail "eth0 up in $CL"
}

# dnsmasq_ns ROLE: a dnsmasq server namespace with bridge br0 holding
# SERVER_ADDR; its name in SRV.
dnsmasq_ns() {
    mkns "$1"
    SRV=$NS
    ip -n "$SRV" link add br0 type bridge || fail "bridge in $SRV"
    ip -n "$SRV" addr add "$SERVER_ADDR/$PREFIX" dev br0 || fail "address in $SRV"
    ip -n "$SRV" link set br0 up || fail "br0 up in $SRV"
}

# ---- the data both servers serve ------------------------------------------
# HOSTS static hosts hN.bench.lan from 10.88.0.12 on (below the pool,
# which starts at 10.88.8.1), and the query file.
(( HOSTS >= 1 && HOSTS <= 1900 )) || fail "HOSTS must be 1..1900"
host_ip() { local n=$(($1 + 10)); echo "10.88.$((n / 250)).$((n % 250 + 1))"; }
host_mac() { printf '52:54:00:88:%02x:%02x' $(($1 / 256)) $(($1 % 256)); }
: >"$DIR/hosts"
: >"$DIR/queries.txt"
HOSTS_TOML=""
for n in $(seq 1 "$HOSTS"); do
    ip=$(host_ip "$n")
    echo "$ip h$n.$DOMAIN h$n" >>"$DIR/hosts"
    HOSTS_TOML+="${HOSTS_TOML:+, }{ mac = \"$(host_mac "$n")\", ip = \"$ip\", name = \"h$n\" }"
    echo "h$n.$DOMAIN A" >>"$DIR/queries.txt"
done
nx=$((HOSTS * NX / 100))
for n in $(seq 1 "$nx"); do echo "nx$n.$DOMAIN A" >>"$DIR/queries.txt"; done

# ---- measuring --------------------------------------------------------------
declare -A FIG NOTE
CMDS=()

ratio() {
    if [[ $1 == n/a || $2 == n/a || -z $1 || -z $2 ]]; then echo n/a; return; fi
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }'
}
fmt() { if [[ $1 == n/a ]]; then echo n/a; else awk -v a="$1" 'BEGIN { printf "%.0f", a }'; fi; }

# dhcp_ready CLIENT_NS: a few 4-way exchanges (10 a second, at most 3 s)
# completed, within 5 tries. (perfdhcp exits 3 whenever a packet was lost,
# so its rate line is what counts.)
dhcp_ready() {
    local i
    for i in $(seq 5); do
        timeout 10 ip netns exec "$1" "$PERFDHCP" -4 -l "$CLIENT_ADDR" -r 10 -n 10 -p 3 -d 1 -W 500000 \
            "$SERVER_ADDR" >"$DIR/ready.txt" 2>&1 || true
        awk '/^Rate:/ { ok = ($2 > 0) } END { exit !ok }' "$DIR/ready.txt" && return 0
        sleep 1
    done
    return 1
}

# perfdhcp CLIENT_NS KEY: one run per offered rate of RATES; the best DORA
# rate into FIG[KEY], every point into NOTE[KEY]. (Offered far past what a
# server can take, lost OFFERs cost whole exchanges, so a single offered
# rate would either not saturate one server or punish another.)
run_perfdhcp() {
    local cl=$1 key=$2 r out cmd rate best=n/a points=""
    for r in $RATES; do
        out="$DIR/$key.r$r.perfdhcp.txt"
        cmd=("$PERFDHCP" -4 -l "$CLIENT_ADDR" -R "$CLIENTS" -r "$r" -p "$DHCP_SECONDS" -W 2000000 "$SERVER_ADDR")
        CMDS+=("$key: ip netns exec <client ns> ${cmd[*]}")
        echo "bench: $key: perfdhcp -r $r for ${DHCP_SECONDS}s" >&2
        timeout $((DHCP_SECONDS + 60)) ip netns exec "$cl" "${cmd[@]}" >"$out" 2>&1 || true
        rate=$(awk '/^Rate:/ {print $2; exit}' "$out")
        if [[ -z $rate ]]; then
            points+=" -r $r: no rate;"
            tail -5 "$out" | sed "s/^/  $key perfdhcp: /" >&2
            continue
        fi
        points+=" -r $r: $(fmt "$rate") ($(awk '/Statistics for: DISCOVER-OFFER/{f=1} f&&/drops ratio/{print $3 $4 " offers lost"; exit}' "$out"));"
        if [[ $best == n/a ]] || awk -v a="$rate" -v b="$best" 'BEGIN { exit !(a > b) }'; then
            best=$rate
        fi
    done
    FIG[$key]=$best
    NOTE[$key]="best of${points%;}"
}

# dns_ready CLIENT_NS: h1 answered within 10 s.
dns_ready() {
    local i
    for i in $(seq 20); do
        ip netns exec "$1" dig +time=1 +tries=1 +short "@$SERVER_ADDR" "h1.$DOMAIN" A 2>/dev/null \
            | grep -qx "$(host_ip 1)" && return 0
        sleep 0.5
    done
    return 1
}

# dnsperf CLIENT_NS KEY: queries per second into FIG[KEY].
run_dnsperf() {
    local cl=$1 key=$2 out="$DIR/$2.dnsperf.txt" cmd
    cmd=("$DNSPERF" -s "$SERVER_ADDR" -d "$DIR/queries.txt" -l "$DNS_SECONDS" -c "$DNS_CLIENTS" -q "$DNS_OUTSTANDING")
    CMDS+=("$key: ip netns exec <client ns> ${cmd[*]}")
    echo "bench: $key: dnsperf for ${DNS_SECONDS}s" >&2
    timeout $((DNS_SECONDS + 60)) ip netns exec "$cl" "${cmd[@]}" >"$out" 2>&1 || true
    local qps
    qps=$(awk '/Queries per second:/ {print $4; exit}' "$out")
    if [[ -n $qps ]]; then
        FIG[$key]=$qps
        NOTE[$key]=$(awk '/Queries lost:/ {print "lost " $4; exit}' "$out" | tr -d '()')
    else
        FIG[$key]=n/a
        NOTE[$key]="dnsperf printed no rate"
        tail -5 "$out" | sed "s/^/  $key dnsperf: /" >&2
    fi
}

# ---- Kea -----------------------------------------------------------------------
# kea-dhcp4 on br0 of its own namespace, UDP sockets (it then answers the
# relayed requests perfdhcp sends to SERVER_ADDR), the same /16 and pool, a
# memfile lease database persisted to disk (Kea appends each lease to its CSV
# file without syncing it) and no lease file cleanup during the run.
if [[ $DO_DHCP == 1 ]]; then
    key=dhcp-kea
    if [[ -x $KEA ]]; then
        dnsmasq_ns kea
        client_ns "$SRV" br0 keacl
        srv=$SRV cl=$CL
        mkdir -p "$DIR/kea"
        cat >"$DIR/kea/kea.json" <<KEAEOF
{ "Dhcp4": {
    "interfaces-config": { "interfaces": [ "br0" ], "dhcp-socket-type": "udp" },
    "lease-database": { "type": "memfile", "persist": true, "name": "$DIR/kea/leases.csv", "lfc-interval": 0 },
    "valid-lifetime": $LEASE_SECONDS,
    "authoritative": true,
    "subnet4": [ { "id": 1, "subnet": "10.88.0.0/$PREFIX",
                   "pools": [ { "pool": "$POOL_START - $POOL_END" } ] } ],
    "loggers": [ { "name": "kea-dhcp4", "output_options": [ { "output": "stdout" } ], "severity": "WARN" } ]
} }
KEAEOF
        cmd=("$KEA" -c "$DIR/kea/kea.json")
        CMDS+=("$key: KEA_PIDFILE_DIR=<dir> KEA_LOCKFILE_DIR=<dir> ip netns exec <server ns> ${cmd[*]}  (kea.json: br0, udp sockets, the same /16 and pool, memfile persist=true lfc-interval=0)")
        KEA_PIDFILE_DIR=$DIR/kea KEA_LOCKFILE_DIR=$DIR/kea ip netns exec "$srv" "${cmd[@]}" >"$DIR/kea/log" 2>&1 &
        KEA_PID=$!
        PIDS+=("$KEA_PID")
        sleep 0.5
        kill -0 "$KEA_PID" 2>/dev/null || fail "kea-dhcp4 did not start: $(tail -5 "$DIR/kea/log")"
        if dhcp_ready "$cl"; then
            run_perfdhcp "$cl" "$key"
        else
            FIG[$key]=n/a
            NOTE[$key]="Kea does not answer: $(tail -2 "$DIR/ready.txt" | tr '\n' ' ')"
        fi
        stop "$KEA_PID"
    else
        FIG[$key]=n/a
        NOTE[$key]="kea-dhcp4 is not installed (scripts/deps-bench.sh)"
    fi
fi

# ---- dnsmasq ------------------------------------------------------------------
DNSMASQ_COMMON=(--keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts
    --user=root --group=root --bind-interfaces)
DNSMASQ_DHCP=(--port=0 --interface=br0 --except-interface=lo
    "--dhcp-range=$POOL_START,$POOL_END,255.255.0.0,${LEASE_SECONDS}s"
    --dhcp-authoritative --no-ping --dhcp-lease-max=70000)

# start_dnsmasq NS KEY ARGS...: dnsmasq in NS; its pid in DM_PID.
start_dnsmasq() {
    local ns=$1 key=$2
    shift 2
    local cmd=("$DNSMASQ" "${DNSMASQ_COMMON[@]}" "--pid-file=$DIR/$key.pid" "$@")
    CMDS+=("$key: ip netns exec <server ns> ${cmd[*]}")
    ip netns exec "$ns" "${cmd[@]}" >"$DIR/$key.dnsmasq.log" 2>&1 &
    DM_PID=$!
    PIDS+=("$DM_PID")
    sleep 0.2
    kill -0 "$DM_PID" 2>/dev/null || fail "dnsmasq ($key) did not start: $(cat "$DIR/$key.dnsmasq.log")"
}

if [[ $DO_DHCP == 1 ]]; then
    for variant in disk ro; do
        key=dhcp-dnsmasq-$variant
        dnsmasq_ns "dm$variant"
        client_ns "$SRV" br0 "dm${variant}cl"
        srv=$SRV cl=$CL
        if [[ $variant == disk ]]; then
            leases=(--dhcp-leasefile="$DIR/dnsmasq-disk.leases")
        else
            leases=(--leasefile-ro)
        fi
        start_dnsmasq "$srv" "$key" "${DNSMASQ_DHCP[@]}" "${leases[@]}"
        dhcp_ready "$cl" || fail "dnsmasq ($variant) does not answer DHCP: $(tail -3 "$DIR/ready.txt")"
        run_perfdhcp "$cl" "$key"
        stop "$DM_PID"
    done
fi

if [[ $DO_DNS == 1 ]]; then
    key=dns-dnsmasq
    dnsmasq_ns dmdns
    client_ns "$SRV" br0 dmdnscl
    srv=$SRV cl=$CL
    start_dnsmasq "$srv" "$key" "--listen-address=$SERVER_ADDR" "--addn-hosts=$DIR/hosts" \
        "--local=/$DOMAIN/" "--domain=$DOMAIN" --cache-size=10000 --port=53
    dns_ready "$cl" || fail "dnsmasq does not answer DNS"
    run_dnsperf "$cl" "$key"
    stop "$DM_PID"
fi

# ---- guestnetd ----------------------------------------------------------------
mkns gnhost
HOST=$NS
mkdir -p "$DIR/gn/config" "$DIR/gn/state" "$DIR/gn/run"
# no forwarders in the definition: the upstream is this file (never used:
# every query of the benchmark is for the network's own domain)
echo "nameserver 127.0.0.1" >"$DIR/gn/resolv.conf"
sed -e "s|@LISTEN@|unix:path=$DIR/bus|" -e "s|@POLICY@|$ROOT/dbus/data/org.guestnet1.conf|" \
    scripts/private-bus.conf.in >"$DIR/bus.conf"
dbus-daemon --config-file="$DIR/bus.conf" --nofork --nopidfile >"$DIR/dbus.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [[ -S $DIR/bus ]] && break; sleep 0.05; done
[[ -S $DIR/bus ]] || fail "the private dbus-daemon did not start: $(cat "$DIR/dbus.log")"
BUS="unix:path=$DIR/bus"

GN_CMD=("$GUESTNETD" --bus-address "$BUS" --config-dir "$DIR/gn/config" --state-dir "$DIR/gn/state"
    --runtime-dir "$DIR/gn/run" --modes-dir "$MODES_DIR" --resolv-conf "$DIR/gn/resolv.conf")
CMDS+=("guestnetd: GUESTNET_LOG=warn ip netns exec <host ns> ${GN_CMD[*]}")
GUESTNET_LOG=warn ip netns exec "$HOST" "${GN_CMD[@]}" >"$DIR/guestnetd.log" 2>&1 &
GN_PID=$!
PIDS+=("$GN_PID")
for _ in $(seq 200); do
    busctl --address="$BUS" status org.guestnet1 >/dev/null 2>&1 && break
    kill -0 "$GN_PID" 2>/dev/null || fail "guestnetd exited: $(tail -5 "$DIR/guestnetd.log")"
    sleep 0.05
done
busctl --address="$BUS" status org.guestnet1 >/dev/null 2>&1 || fail "guestnetd did not take its bus name"

NET_TOML="name = \"bench\"
mode = \"isolated\"
bridge = \"gnbench0\"
[ipv4]
address = \"$SERVER_ADDR/$PREFIX\"
dhcp = { start = \"$POOL_START\", end = \"$POOL_END\", lease_time = \"${LEASE_SECONDS}s\", max_leases_per_port = 65536 }
hosts = [$HOSTS_TOML]
[dns]
domain = \"$DOMAIN\""
echo "$NET_TOML" >"$DIR/bench.toml"
CMDS+=("guestnetd: busctl --address=... call org.guestnet1 /org/guestnet1 org.guestnet1.Manager CreateNetwork s \"\$(cat bench.toml)\"  (an isolated network, bridge gnbench0, the same /16, pool and $HOSTS static hosts)")
busctl --address="$BUS" call org.guestnet1 /org/guestnet1 org.guestnet1.Manager CreateNetwork s "$NET_TOML" \
    >/dev/null 2>"$DIR/create.err" || fail "CreateNetwork: $(cat "$DIR/create.err")"
client_ns "$HOST" gnbench0 gncl
GNCL=$CL

if [[ $DO_DHCP == 1 ]]; then
    if dhcp_ready "$GNCL"; then
        run_perfdhcp "$GNCL" dhcp-guestnet
    else
        FIG[dhcp-guestnet]=n/a
        NOTE[dhcp-guestnet]="guestnetd's DHCP server does not answer (yet?)"
    fi
fi
if [[ $DO_DNS == 1 ]]; then
    if dns_ready "$GNCL"; then
        run_dnsperf "$GNCL" dns-guestnet
    else
        FIG[dns-guestnet]=n/a
        NOTE[dns-guestnet]="guestnetd's DNS server does not answer (yet?)"
    fi
fi
kill -0 "$GN_PID" 2>/dev/null || echo "bench: note: guestnetd exited during the run: $(tail -3 "$DIR/guestnetd.log")" >&2
RSS_KB=$(awk '/^VmRSS:/ {print $2}' "/proc/$GN_PID/status" 2>/dev/null || echo "?")
stop "$GN_PID"

# ---- the table -------------------------------------------------------------------

echo
echo "guestnet DHCP/DNS benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores"
echo "  guestnetd: $("$GUESTNETD" --version 2>/dev/null | head -1) ($GUESTNETD), resident at the end: ${RSS_KB} kB"
echo "  dnsmasq:   $("$DNSMASQ" --version | head -1)"
[[ -x $KEA ]] && echo "  Kea:       kea-dhcp4 $("$KEA" -v 2>&1 | head -1)"
echo "  perfdhcp:  $("$PERFDHCP" -v 2>&1 | head -1);  dnsperf: $("$DNSPERF" -h 2>&1 | awk '/^Version/ {print $2; exit}')"
echo
printf '%-44s %12s %12s %9s   %s\n' "figure" "guestnetd" "peer" "ratio" "target"
printf '%-44s %12s %12s %9s   %s\n' "--------------------------------------------" "---------" "----" "-----" "------"
if [[ $DO_DHCP == 1 ]]; then
    g=${FIG[dhcp-guestnet]:-n/a}
    d=${FIG[dhcp-kea]:-n/a}
    printf '%-44s %12s %12s %9s   %s\n' "DHCP DORA/s, Kea memfile (appended, unsynced)" "$(fmt "$g")" "$(fmt "$d")" "$(ratio "$g" "$d")" ">= 1.5x (ours durable)"
    for variant in disk ro; do
        d=${FIG[dhcp-dnsmasq-$variant]:-n/a}
        if [[ $variant == disk ]]; then
            label="DHCP DORA/s, dnsmasq lease file on disk"
            target=">= 10x"
        else
            label="DHCP DORA/s, dnsmasq --leasefile-ro"
            target="> 1x (ours stay durable)"
        fi
        printf '%-44s %12s %12s %9s   %s\n' "$label" "$(fmt "$g")" "$(fmt "$d")" "$(ratio "$g" "$d")" "$target"
    done
fi
if [[ $DO_DNS == 1 ]]; then
    g=${FIG[dns-guestnet]:-n/a}
    d=${FIG[dns-dnsmasq]:-n/a}
    printf '%-44s %12s %12s %9s   %s\n' "DNS queries/s ($HOSTS names, $NX% NXDOMAIN)" "$(fmt "$g")" "$(fmt "$d")" "$(ratio "$g" "$d")" ">= 2x (dnsmasq)"
fi
echo
echo "notes:"
for k in dhcp-guestnet dhcp-kea dhcp-dnsmasq-disk dhcp-dnsmasq-ro dns-guestnet dns-dnsmasq; do
    [[ -n ${FIG[$k]:-} ]] && echo "  $k: ${FIG[$k]} ${NOTE[$k]:+(${NOTE[$k]})}"
done
echo "  DHCP: $CLIENTS clients (perfdhcp -R); the best of offered rates $RATES per second,"
echo "        ${DHCP_SECONDS}s each; perfdhcp is a relay agent at $CLIENT_ADDR (giaddr, from port 67) on"
echo "        the server's bridge; pool $POOL_START-$POOL_END, lease ${LEASE_SECONDS}s; Kea: memfile"
echo "        persisted, not synced, lfc-interval 0; dnsmasq with"
echo "        --no-ping (its fastest setting) and --dhcp-authoritative; guestnetd's leases are durable."
echo "  DNS:  $DNS_CLIENTS clients, $DNS_OUTSTANDING outstanding queries each, ${DNS_SECONDS}s; the same query file"
echo "        ($(wc -l <"$DIR/queries.txt") lines: hN.$DOMAIN A, nxN.$DOMAIN A) against both."
echo
echo "commands:"
for c in "${CMDS[@]}"; do echo "  $c"; done
