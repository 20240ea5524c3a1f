#!/usr/bin/python3
"""Times network start and stop through one system's own client API, from this
one process (no process start per call on either side), and reads the
resident memory of the system's processes from /proc. Prints one JSON object.

    bench-lifecycle.py guestnet --bus ADDR --pid PID [options]   (Gio D-Bus calls)
    bench-lifecycle.py libvirt --netns NS [options]               (libvirt-python)

scripts/bench-lifecycle.sh starts the daemons, runs this once per system and
prints the table. Every network this defines is stopped and undefined again
before it exits (also on an error).
"""
import argparse
import json
import os
import statistics
import sys
import time


def now():
    return time.perf_counter()


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pids_in_netns(ns):
    """Every process whose network namespace is /run/netns/NS."""
    target = os.stat(f"/run/netns/{ns}")
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{d}/ns/net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            found.append(int(d))
    return found


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def net_octets(i):
    return 1 + i // 250, i % 250


class Guestnet:
    """guestnetd through Gio's D-Bus client, one connection."""

    name = "guestnetd"

    def __init__(self, bus, pid):
        import gi

        gi.require_version("Gio", "2.0")
        from gi.repository import Gio, GLib

        self.Gio, self.GLib = Gio, GLib
        self.pid = pid
        flags = Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION
        self.conn = Gio.DBusConnection.new_for_address_sync(bus, flags, None, None)
        self.manager = self.proxy("/org/guestnet1", "org.guestnet1.Manager")
        self.networks = {}

    def proxy(self, path, iface):
        Gio = self.Gio
        return Gio.DBusProxy.new_sync(
            self.conn,
            Gio.DBusProxyFlags.DO_NOT_LOAD_PROPERTIES | Gio.DBusProxyFlags.DO_NOT_CONNECT_SIGNALS,
            None,
            "org.guestnet1",
            path,
            iface,
            None,
        )

    def call(self, proxy, method, args=None):
        proxy.call_sync(method, args, self.Gio.DBusCallFlags.NONE, 120000, None)

    def define(self, i):
        a, b = net_octets(i)
        name = f"b{i}"
        toml = f'name = "{name}"\nmode = "nat"\n[ipv4]\naddress = "10.{100 + a}.{b}.1/24"\n[dns]\ndomain = "{name}.lan"\n'
        self.call(self.manager, "DefineNetwork", self.GLib.Variant("(s)", (toml,)))
        self.networks[i] = self.proxy(f"/org/guestnet1/network/{name}", "org.guestnet1.Network")

    def start(self, i):
        self.call(self.networks[i], "Start")

    def stop(self, i):
        self.call(self.networks[i], "Stop")

    def undefine(self, i):
        self.call(self.networks.pop(i), "Undefine")

    def rss(self):
        return rss_kb(self.pid), {"guestnetd": 1}


class Libvirt:
    """libvirtd's network driver through libvirt-python, one connection."""

    name = "libvirt"

    def __init__(self, netns, prefix):
        import libvirt

        libvirt.registerErrorHandler(lambda *_: None, None)
        self.conn = libvirt.open("network:///system")
        self.netns = netns
        self.prefix = prefix
        self.networks = {}

    def define(self, i):
        a, b = net_octets(i)
        name = f"{self.prefix}{i}"
        net = f"10.{231 + a}.{b}"
        xml = (
            f"<network><name>{name}</name><forward mode='nat'/><bridge name='{self.prefix}br{i}'/>"
            f"<ip address='{net}.1' netmask='255.255.255.0'><dhcp>"
            f"<range start='{net}.10' end='{net}.200'/></dhcp></ip></network>"
        )
        self.conn.networkDefineXML(xml)
        self.networks[i] = name

    def start(self, i):
        self.conn.networkLookupByName(self.networks[i]).create()

    def stop(self, i):
        self.conn.networkLookupByName(self.networks[i]).destroy()

    def undefine(self, i):
        net = self.conn.networkLookupByName(self.networks.pop(i))
        if net.isActive():
            net.destroy()
        net.undefine()

    def rss(self):
        total, kinds = 0, {}
        for pid in pids_in_netns(self.netns):
            total += rss_kb(pid)
            c = comm(pid)
            kinds[c] = kinds.get(c, 0) + 1
        return total, kinds


def ms(t):
    return round(t * 1000, 2)


def table(argv):
    ap = argparse.ArgumentParser(prog="bench-lifecycle.py table")
    ap.add_argument("gn")
    ap.add_argument("lv")
    ap.add_argument("--lv-version", default="")
    o = ap.parse_args(argv)
    with open(o.gn) as f:
        gn = json.load(f)
    with open(o.lv) as f:
        lv = json.load(f)

    def val(d, k, scale=1.0):
        return None if k not in d else d[k] * scale

    def fmt(v, unit):
        if v is None:
            return "n/a"
        return f"{v:,.1f} {unit}" if unit != "s" else f"{v:,.2f} s"

    def ratio(a, b):
        return "n/a" if a is None or b is None or a == 0 else f"{b / a:.1f}x"

    rows = [
        ("start one NAT network, median of {r}", "start_one_ms", 1, "ms", ">= 10x"),
        ("stop one NAT network, median of {r}", "stop_one_ms", 1, "ms", ">= 10x"),
        ("start {m} networks, one after another", "start_many_s", 1, "s", ">= 10x"),
        ("stop {m} networks, one after another", "stop_many_s", 1, "s", ">= 10x"),
        ("RSS with {m} networks active", "rss_many_kb", 1 / 1024, "MB", "<= 15 MB"),
        ("RSS idle (no network)", "rss_idle_kb", 1 / 1024, "MB", "<= 8 MB"),
    ]
    rounds = gn.get("rounds", "?")
    many = gn.get("many", "?")
    print()
    print(f"| figure | guestnetd | libvirt {o.lv_version} | ratio (libvirt / guestnetd) | goal |")
    print("|---|---|---|---|---|")
    for label, k, sc, unit, goal in rows:
        a, b = val(gn, k, sc), val(lv, k, sc)
        print(f"| {label.format(r=rounds, m=many)} | {fmt(a, unit)} | {fmt(b, unit)} | {ratio(a, b)} | {goal} |")
    if lv.get("procs_many"):
        procs = ", ".join(f"{v} {k}" for k, v in sorted(lv["procs_many"].items()))
        print(f"\nlibvirt's RSS is the sum over every process in its namespace: {procs} with {many} networks active.")
    print()
    print("start / stop of one network with N networks active (median of "
          f"{gn.get('scale_rounds', '?')}; N counts the one started):")
    print()
    print(f"| N active | guestnetd start | guestnetd stop | libvirt {o.lv_version} start | libvirt stop |")
    print("|---|---|---|---|---|")
    sizes = sorted({int(n) for n in gn.get("scale", {})} | {int(n) for n in lv.get("scale", {})})
    for n in sizes:
        g = gn.get("scale", {}).get(str(n), {})
        v = lv.get("scale", {}).get(str(n), {})
        cells = [fmt(d.get(k), "ms") for d in (g, v) for k in ("start_ms", "stop_ms")]
        print(f"| {n} | " + " | ".join(cells) + " |")
    for who, d in (("guestnetd", gn), ("libvirt", lv)):
        for n, v in d.get("scale", {}).items():
            if "error" in v:
                print(f"\n{who} could not reach {n} active networks: {v['error']}")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "table":
        table(sys.argv[2:])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("system", choices=["guestnet", "libvirt"])
    ap.add_argument("--bus")
    ap.add_argument("--pid", type=int)
    ap.add_argument("--netns")
    ap.add_argument("--prefix", default="lvb")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--many", type=int, default=50)
    ap.add_argument("--scale", default="1,50,100,200")
    ap.add_argument("--scale-rounds", type=int, default=10)
    o = ap.parse_args()
    sysm = Guestnet(o.bus, o.pid) if o.system == "guestnet" else Libvirt(o.netns, o.prefix)
    scale = [int(x) for x in o.scale.split(",") if x]
    top = max([o.many] + scale)
    out = {"system": sysm.name, "rounds": o.rounds, "many": o.many, "scale_rounds": o.scale_rounds}
    active = set()

    def log(msg):
        print(f"bench-lifecycle.py: {sysm.name}: {msg}", file=sys.stderr, flush=True)

    def start(i):
        sysm.start(i)
        active.add(i)

    def stop(i):
        sysm.stop(i)
        active.discard(i)

    try:
        time.sleep(1)
        out["rss_idle_kb"], out["procs_idle"] = sysm.rss()
        # network 0 is the probe; 1..top the others
        for i in range(top + 1):
            sysm.define(i)
        log(f"{top + 1} networks defined")

        starts, stops = [], []
        for _ in range(o.rounds):
            t0 = now()
            start(0)
            t1 = now()
            stop(0)
            t2 = now()
            starts.append(t1 - t0)
            stops.append(t2 - t1)
        out["start_one_ms"] = ms(statistics.median(starts))
        out["stop_one_ms"] = ms(statistics.median(stops))
        log(f"one: start {out['start_one_ms']} ms, stop {out['stop_one_ms']} ms")

        t0 = now()
        for i in range(1, o.many + 1):
            start(i)
        out["start_many_s"] = round(now() - t0, 3)
        time.sleep(1)  # let the DHCP/DNS servers (dnsmasq processes) settle
        out["rss_many_kb"], out["procs_many"] = sysm.rss()
        t0 = now()
        for i in range(o.many, 0, -1):
            stop(i)
        out["stop_many_s"] = round(now() - t0, 3)
        log(f"{o.many}: start {out['start_many_s']} s, stop {out['stop_many_s']} s")

        # the cost of one start and one stop with N networks active (the probe included)
        out["scale"] = {}
        fill_start = 0.0
        for n in scale:
            try:
                t0 = now()
                for i in range(1, n):
                    if i not in active:
                        start(i)
                fill_start += now() - t0
                starts, stops = [], []
                for _ in range(o.scale_rounds):
                    t0 = now()
                    start(0)
                    t1 = now()
                    stop(0)
                    t2 = now()
                    starts.append(t1 - t0)
                    stops.append(t2 - t1)
            except Exception as e:  # noqa: BLE001 - a size the system cannot reach
                out["scale"][str(n)] = {"error": str(e).splitlines()[-1][:200]}
                log(f"{n} active: failed: {e}")
                break
            out["scale"][str(n)] = {
                "start_ms": ms(statistics.median(starts)),
                "stop_ms": ms(statistics.median(stops)),
            }
            log(f"{n} active: {out['scale'][str(n)]}")
        t0 = now()
        for i in sorted(active, reverse=True):
            stop(i)
        out["scale_fill_start_s"] = round(fill_start, 2)
        out["scale_stop_all_s"] = round(now() - t0, 2)
    finally:
        for i in sorted(active, reverse=True):
            try:
                sysm.stop(i)
            except Exception as e:  # noqa: BLE001 - clean up what can be
                log(f"stop {i}: {e}")
        for i in list(sysm.networks):
            try:
                sysm.undefine(i)
            except Exception as e:  # noqa: BLE001
                log(f"undefine {i}: {e}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
