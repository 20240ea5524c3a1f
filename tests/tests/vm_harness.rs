//! The harness's VM guest works, without guestnetd: in a namespace of the
//! test's own, a bridge with an address, a persistent tap on it, dnsmasq
//! serving DHCP on the bridge, and a real VM (qemu, Debian's kernel, the
//! harness's initramfs) on the tap. The guest gets a lease with its MAC and
//! answers a ping from the namespace.

use std::time::Instant;

use guestnet_tests::vm::{Vm, VmAssets, VmOpts, BOOT_TIMEOUT};
use guestnet_tests::{probe, root_or_skip, vm_or_skip, World};

const MAC: &str = "52:54:00:5e:00:01";
const BRIDGE: &str = "br0";
const TAP: &str = "tapvm0";

#[test]
fn a_vm_on_a_tap_gets_a_lease_with_its_mac_and_answers_ping() {
    root_or_skip!();
    vm_or_skip!();
    let t0 = Instant::now();
    let assets = VmAssets::get();
    let assets_took = t0.elapsed();

    let world = World::new();
    let dir = tempfile::Builder::new()
        .prefix("gnt-vm-harness-")
        .tempdir()
        .unwrap();
    let ns = world.add_ns("vmhost");
    world.ip(&ns, &format!("link add {BRIDGE} type bridge"));
    world.ip(&ns, &format!("addr add 10.98.0.1/24 dev {BRIDGE}"));
    world.ip(&ns, &format!("link set {BRIDGE} up"));
    // A persistent tap, as AttachGuest will make: it exists before qemu
    // opens it (and would stay after qemu is gone).
    world.ip(&ns, &format!("tuntap add dev {TAP} mode tap"));
    world.ip(&ns, &format!("link set {TAP} master {BRIDGE} up"));

    let leases = dir.path().join("dnsmasq.leases");
    let pid = format!("--pid-file={}", dir.path().join("dnsmasq.pid").display());
    let leasefile = format!("--dhcp-leasefile={}", leases.display());
    let iface = format!("--interface={BRIDGE}");
    world.spawn(
        &ns,
        &[
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            &pid,
            &leasefile,
            "--no-resolv",
            "--no-hosts",
            "--port=0",
            &iface,
            "--bind-interfaces",
            "--dhcp-range=10.98.0.100,10.98.0.199,2m",
            "--dhcp-authoritative",
            "--dhcp-option=option:dns-server,10.98.0.1",
            "--no-ping",
            "--user=root",
            "--group=root",
        ],
    );

    let opts = VmOpts {
        hostname: Some("gnvm".into()),
        ..VmOpts::default()
    };
    let vm = Vm::boot_with(&world, &ns, TAP, MAC, assets, &opts);
    let lease = vm.wait_ready(BOOT_TIMEOUT);
    let booted = vm.started().elapsed();

    assert!(lease.ip.starts_with("10.98.0."), "{lease:?}");
    assert_eq!(lease.prefix, 24, "{lease:?}");
    assert_eq!(lease.router.as_deref(), Some("10.98.0.1"), "{lease:?}");
    assert_eq!(lease.dns, ["10.98.0.1"], "{lease:?}");
    assert_eq!(lease.server.as_deref(), Some("10.98.0.1"), "{lease:?}");
    let link = vm.wait_for_line("GUESTNET-VM-LINK", BOOT_TIMEOUT);
    assert!(
        link.ends_with(MAC),
        "the guest's eth0 has another MAC: {link}"
    );

    // The server saw the guest's MAC and hostname: the lease file's line is
    // `EXPIRY MAC IP HOSTNAME CLIENT-ID`.
    let text = std::fs::read_to_string(&leases).unwrap_or_default();
    let entry = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.len() >= 4 && w[2] == lease.ip)
        .unwrap_or_else(|| panic!("dnsmasq has no lease for {}:\n{text}", lease.ip));
    assert_eq!(entry[1], MAC, "{text}");
    assert_eq!(entry[3], "gnvm", "{text}");

    probe::assert_ping(&world, &ns, &lease.ip);
    // And the answer came from the VM's NIC.
    let neigh = world.ip_json(&ns, &format!("neigh show {} dev {BRIDGE}", lease.ip));
    assert_eq!(neigh[0]["lladdr"].as_str(), Some(MAC), "{neigh}");

    eprintln!(
        "VM harness: assets {:.1} s ({}); {} boot: init after {:.1} s, lease after {:.1} s",
        assets_took.as_secs_f64(),
        assets.key,
        vm.accel().as_str(),
        vm.init_after().as_secs_f64(),
        booted.as_secs_f64(),
    );
    // qemu is gone; the persistent tap stays (until the world goes).
    drop(vm);
    assert!(
        world.has_link(&ns, TAP),
        "the persistent tap went with qemu"
    );
}
