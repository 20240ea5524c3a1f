//! The usual world of a test: a `host` namespace running guestnetd, a `lan`
//! machine behind the host's uplink, and guests plugged into a network's
//! bridge.
//!
//! ```text
//!   guest g1 (eth0 10.x.y.10) --veth-- vg1 [bridge] host up0 10.200.0.1/24 --veth-- eth0 10.200.0.2/24 lan
//! ```
//!
//! The host's default route goes via the lan machine (10.200.0.2). The lan
//! machine has no route to any guest subnet unless a test adds one.

use crate::bus::{Bus, BusOptions};
use crate::guestnet::Guestnet;
use crate::service::Service;
use crate::world::World;

/// The host's uplink interface.
pub const UPLINK: &str = "up0";
/// The host's address on the uplink.
pub const HOST_UPLINK_ADDR: &str = "10.200.0.1";
pub const HOST_UPLINK_CIDR: &str = "10.200.0.1/24";
/// The lan machine's interface and address.
pub const LAN_IF: &str = "eth0";
pub const LAN_ADDR: &str = "10.200.0.2";
pub const LAN_CIDR: &str = "10.200.0.2/24";
/// The uplink's subnet.
pub const LAN_SUBNET: &str = "10.200.0.0/24";

/// Makes `host` and `lan` in `world`, joined by `up0` ↔ `eth0`, with the
/// addresses above and the host's default route via the lan machine.
/// Returns (host, lan).
pub fn host_and_lan(world: &World) -> (String, String) {
    let host = world.add_ns("host");
    let lan = world.add_ns("lan");
    world.veth(&host, UPLINK, &lan, LAN_IF);
    world.ip(&host, &format!("addr add {HOST_UPLINK_CIDR} dev {UPLINK}"));
    world.ip(&lan, &format!("addr add {LAN_CIDR} dev {LAN_IF}"));
    world.ip(
        &host,
        &format!("route add default via {LAN_ADDR} dev {UPLINK}"),
    );
    (host, lan)
}

/// Gives `host` the admin's own bridge `br0`, holding the uplink, its
/// address and the default route, as a host set up for bridged guests has
/// before guestnet runs.
pub fn admin_bridge(world: &World, host: &str) {
    world.ip(host, "link add br0 type bridge");
    world.ip(host, &format!("link set {UPLINK} master br0"));
    world.ip(host, &format!("addr del {HOST_UPLINK_CIDR} dev {UPLINK}"));
    world.ip(host, &format!("addr add {HOST_UPLINK_CIDR} dev br0"));
    world.ip(host, "link set br0 up");
    world.ip(
        host,
        &format!("route replace default via {LAN_ADDR} dev br0"),
    );
}

/// Makes a guest namespace `role` whose `eth0` is a veth to `host_if` in
/// `host`, with `host_if` enslaved to `bridge`; gives the guest `cidr` and,
/// if given, a default route via `gateway`. Returns the guest's namespace.
pub fn add_guest(
    world: &World,
    host: &str,
    role: &str,
    host_if: &str,
    bridge: &str,
    cidr: &str,
    gateway: Option<&str>,
) -> String {
    let guest = world.add_ns(role);
    world.veth(host, host_if, &guest, "eth0");
    world.ip(host, &format!("link set {host_if} master {bridge} up"));
    world.ip(&guest, &format!("addr add {cidr} dev eth0"));
    if let Some(gw) = gateway {
        world.ip(&guest, &format!("route add default via {gw} dev eth0"));
    }
    guest
}

/// A network `name` of `mode` on `bridge` with address `P.1/24`, a DHCP
/// pool `P.100`-`P.199` (leases of an hour), and DNS domain `NAME.lan`
/// forwarded to the lan machine.
pub fn definition(name: &str, mode: &str, bridge: &str, p: &str) -> String {
    format!(
        "name = \"{name}\"\nmode = \"{mode}\"\nbridge = \"{bridge}\"\n\
         [ipv4]\naddress = \"{p}.1/24\"\n\
         dhcp = {{ start = \"{p}.100\", end = \"{p}.199\", lease_time = \"1h\" }}\n\
         [dns]\ndomain = \"{name}.lan\"\nforwarders = [\"{LAN_ADDR}\"]\n"
    )
}

/// Defines and starts the network of [`definition`]; returns its object
/// path.
pub fn started(gn: &Guestnet, name: &str, mode: &str, bridge: &str, p: &str) -> String {
    let net = gn.define(&definition(name, mode, bridge, p));
    gn.start(&net);
    net
}

/// A NAT network `name` on `bridge` with address `cidr`, and nothing else
/// (the defaults: DHCP and DNS as guestnet chooses).
pub fn nat_definition(name: &str, bridge: &str, cidr: &str) -> String {
    format!(
        "name = \"{name}\"\nmode = \"nat\"\nbridge = \"{bridge}\"\n[ipv4]\naddress = \"{cidr}\"\n"
    )
}

/// A world with host and lan, a private bus, and guestnetd in the host.
/// Fields drop in order: the service, then the bus, then the world.
pub struct Lab {
    pub service: Service,
    pub bus: Bus,
    pub host: String,
    pub lan: String,
    pub world: World,
    /// A temporary directory for the test's own files (a resolv.conf for
    /// guestnetd, ...); it goes after everything else.
    pub scratch: tempfile::TempDir,
}

impl Lab {
    /// The standard lab.
    pub fn new() -> Lab {
        Self::build(|_, _, _| {})
    }

    /// The standard lab, with `setup(world, host, lan)` run before guestnetd
    /// starts.
    pub fn build(setup: impl FnOnce(&World, &str, &str)) -> Lab {
        Self::build_with_args(&[], setup)
    }

    /// Like [`Lab::build`], with extra arguments for guestnetd.
    pub fn build_with_args(extra_args: &[&str], setup: impl FnOnce(&World, &str, &str)) -> Lab {
        let scratch = scratch_dir();
        Self::build_in(scratch, &BusOptions::default(), extra_args, setup)
    }

    /// The standard lab on a bus with `options` (e.g. polkit's bus policy
    /// included, for a polkitd of the test's own).
    pub fn with_bus(options: &BusOptions) -> Lab {
        Self::build_in(scratch_dir(), options, &[], |_, _, _| {})
    }

    fn build_in(
        scratch: tempfile::TempDir,
        bus_options: &BusOptions,
        extra_args: &[&str],
        setup: impl FnOnce(&World, &str, &str),
    ) -> Lab {
        let world = World::new();
        let (host, lan) = host_and_lan(&world);
        setup(&world, &host, &lan);
        let bus = Bus::start_with(bus_options);
        let service = Service::start_with(&world, &host, &bus, extra_args);
        Lab {
            service,
            bus,
            host,
            lan,
            world,
            scratch,
        }
    }

    /// A lab whose guestnetd takes its upstream DNS servers (for networks
    /// without `forwarders`) from a resolv.conf of the test's own naming
    /// the lan machine ([`LAN_ADDR`]), never the machine's /etc/resolv.conf:
    /// `--resolv-conf SCRATCH/resolv.conf`.
    pub fn with_resolv_conf(setup: impl FnOnce(&World, &str, &str)) -> Lab {
        let scratch = scratch_dir();
        let resolv = scratch.path().join("resolv.conf");
        std::fs::write(
            &resolv,
            format!("# guestnet test: the lan machine is the upstream\nnameserver {LAN_ADDR}\n"),
        )
        .expect("write the test's resolv.conf");
        let resolv = resolv.display().to_string();
        Self::build_in(
            scratch,
            &BusOptions::default(),
            &["--resolv-conf", &resolv],
            setup,
        )
    }

    /// [`crate::dhcp_client::add_dhcp_guest`] in this lab's host: a guest
    /// with MAC `mac` and no address, plugged into `bridge`.
    pub fn add_dhcp_guest(&self, role: &str, host_if: &str, bridge: &str, mac: &str) -> String {
        crate::dhcp_client::add_dhcp_guest(&self.world, &self.host, role, host_if, bridge, mac)
    }

    /// The guestnet client.
    pub fn gn(&self) -> Guestnet {
        self.service.client()
    }

    /// [`add_guest`] in this lab's host.
    pub fn add_guest(
        &self,
        role: &str,
        host_if: &str,
        bridge: &str,
        cidr: &str,
        gateway: Option<&str>,
    ) -> String {
        add_guest(
            &self.world,
            &self.host,
            role,
            host_if,
            bridge,
            cidr,
            gateway,
        )
    }

    /// Whether the host's nftables table `inet guestnet` exists, and its text.
    pub fn guestnet_table(&self) -> Option<String> {
        let out = self
            .world
            .exec(&self.host, &["nft", "list", "table", "inet", "guestnet"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn scratch_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("gnt-lab-")
        .tempdir()
        .expect("temp dir for the lab")
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}
