//! The DHCP options a definition adds (`[ipv4.dhcp]` ntp, routes, search,
//! next_server, filename, raw options; a static host's own boot file and
//! options), as real clients see them: udhcpc and ISC dhclient in guest
//! namespaces ask for them and get them, the guest's routing table holds
//! the classless routes after the lease, a client that asks for nothing
//! gets none of them (but the PXE header fields), and GetConfig shows them.
//!
//! Against the server before it served them (guestnetd at 993cbf3 with
//! this definition parser), each test failed at its first option: udhcpc's
//! `ntpsrv` and dhclient's `new_ntp_servers` were absent, no 172.16.0.0/12
//! route was installed and `siaddr`/`boot_file` were empty.

use guestnet_tests::dhcp_client::{mac, Dhclient, DhclientOpts, Udhcpc, UdhcpcOpts, LEASE_TIMEOUT};
use guestnet_tests::lab::LAN_ADDR;
use guestnet_tests::{root_or_skip, Lab};

const P: &str = "10.77.41";

/// A lab whose guestnetd's upstream DNS is the lan machine.
fn lab() -> Lab {
    Lab::with_resolv_conf(|_, _, _| {})
}

/// The static host with a boot file and an option 224 of its own.
fn pxe_mac() -> String {
    mac(41, 50)
}

/// A nat network on 10.77.41.0/24 (bridge gnbr1) with every kind of
/// option, in the inline `dhcp = { ... }` form users already write.
fn definition() -> String {
    format!(
        r#"name = "dhcpopt"
mode = "nat"
bridge = "gnbr1"
[ipv4]
address = "{P}.1/24"
dhcp = {{ start = "{P}.100", end = "{P}.199", lease_time = "10m", ntp = ["{P}.1", "192.0.2.123"], routes = [{{ to = "172.16.0.0/12", via = "{P}.254" }}], search = ["corp.example", "lab.example"], next_server = "{P}.3", filename = "pxelinux.0", options = [{{ code = 224, text = "hello" }}, {{ code = 225, ip = ["{P}.9", "{P}.10"] }}] }}
hosts = [{{ mac = "{pxe}", ip = "{P}.50", name = "pxe", filename = "ipxe.efi", options = [{{ code = 224, text = "mine" }}] }}]
[dns]
domain = "guest.lan"
forwarders = ["{LAN_ADDR}"]
"#,
        pxe = pxe_mac()
    )
}

/// The guest's route to 172.16.0.0/12 as `ip route` shows it.
fn route_172(lab: &Lab, g: &str) -> String {
    lab.world
        .ip(g, "-4 route show 172.16.0.0/12")
        .trim()
        .to_owned()
}

#[test]
fn udhcpc_gets_the_options_it_asks_for_and_none_it_does_not() {
    root_or_skip!();
    let lab = lab();
    let gn = lab.gn();
    let net = gn.define(&definition());
    gn.start(&net);

    // GetConfig shows what the user wrote (and reads back).
    let config = gn.get_config(&net);
    for line in [
        r#"ntp = ["10.77.41.1", "192.0.2.123"]"#,
        r#"search = ["corp.example", "lab.example"]"#,
        r#"next_server = "10.77.41.3""#,
        r#"filename = "pxelinux.0""#,
        r#"text = "hello""#,
        r#"to = "172.16.0.0/12""#,
        r#"filename = "ipxe.efi""#,
    ] {
        assert!(config.contains(line), "GetConfig lacks {line}:\n{config}");
    }

    // A client asking for each of them by name or number (-O).
    let g = lab.add_dhcp_guest("g1", "vg1", "gnbr1", &mac(41, 1));
    let mut asking = UdhcpcOpts::named("g1");
    for o in [
        "ntpsrv",
        "staticroutes",
        "msstaticroutes",
        "search",
        "tftp",
        "bootfile",
        "224",
        "225",
    ] {
        asking.extra.extend(["-O".to_owned(), o.to_owned()]);
    }
    let c = Udhcpc::start(&lab.world, &g, &asking);
    let b = c.wait_bound(LEASE_TIMEOUT);
    assert_eq!(b.var("ntpsrv"), "10.77.41.1 192.0.2.123", "{b:?}");
    assert_eq!(b.var("search"), "corp.example lab.example", "{b:?}");
    // RFC 3442: 121 replaces option 3, so it leads with the default route.
    let routes = "0.0.0.0/0 10.77.41.1 172.16.0.0/12 10.77.41.254";
    assert_eq!(b.var("staticroutes"), routes, "{b:?}");
    assert_eq!(b.var("msstaticroutes"), routes, "{b:?}");
    assert_eq!(b.var("siaddr"), "10.77.41.3", "next_server in the header");
    assert_eq!(b.var("boot_file"), "pxelinux.0", "filename in the header");
    assert_eq!(b.var("tftp"), "10.77.41.3", "option 66");
    assert_eq!(b.var("bootfile"), "pxelinux.0", "option 67");
    assert_eq!(b.var("opt224"), "68656c6c6f", "\"hello\" in hex");
    assert_eq!(b.var("opt225"), "0a4d29090a4d290a", "two addresses");
    // The basics are still there, and the routes are in the guest's table.
    assert_eq!(b.var("router"), "10.77.41.1");
    let r = route_172(&lab, &g);
    assert!(r.contains("via 10.77.41.254"), "guest routes: {r:?}");
    assert_eq!(
        lab.world.default_routes(&g),
        [("eth0".to_owned(), Some("10.77.41.1".to_owned()))],
    );

    // A client asking for no options (-o: no parameter request list)
    // gets none of them, but the boot server and file in the header,
    // which PXE ROMs read unasked, and the network's basics.
    let g2 = lab.add_dhcp_guest("g2", "vg2", "gnbr1", &mac(41, 2));
    let mut silent = UdhcpcOpts::named("g2");
    silent.extra.push("-o".to_owned());
    let c2 = Udhcpc::start(&lab.world, &g2, &silent);
    let b2 = c2.wait_bound(LEASE_TIMEOUT);
    for var in [
        "ntpsrv",
        "search",
        "staticroutes",
        "msstaticroutes",
        "tftp",
        "bootfile",
        "opt224",
        "opt225",
    ] {
        assert_eq!(b2.get(var), None, "{var} sent unasked: {b2:?}");
    }
    assert_eq!(b2.var("siaddr"), "10.77.41.3");
    assert_eq!(b2.var("boot_file"), "pxelinux.0");
    assert_eq!(b2.var("router"), "10.77.41.1");
    assert_eq!(route_172(&lab, &g2), "", "no route without option 121");
}

/// dhclient's config: option 121, 249 and the raw options by name, and a
/// request for each further option.
const DHCLIENT_CONF: &str = "\
option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;
option guestnet-hello code 224 = text;
option guestnet-ips code 225 = array of ip-address;
also request ntp-servers, domain-search, rfc3442-classless-static-routes, \
tftp-server-name, bootfile-name, guestnet-hello, guestnet-ips;
";

#[test]
fn dhclient_gets_the_options_it_requests_and_a_static_host_its_own_boot_file() {
    root_or_skip!();
    let lab = lab();
    let gn = lab.gn();
    let net = gn.define(&definition());
    gn.start(&net);

    let g = lab.add_dhcp_guest("g1", "vg1", "gnbr1", &mac(41, 3));
    let c = Dhclient::start_with_conf(&lab.world, &g, &DhclientOpts::named("dh1"), DHCLIENT_CONF);
    let b = c.wait_bound(LEASE_TIMEOUT);
    assert_eq!(b.var("new_ntp_servers"), "10.77.41.1 192.0.2.123", "{b:?}");
    assert_eq!(
        b.var("new_domain_search"),
        "corp.example. lab.example.",
        "{b:?}"
    );
    assert_eq!(
        b.var("new_rfc3442_classless_static_routes"),
        "0 10 77 41 1 12 172 16 10 77 41 254",
        "{b:?}"
    );
    assert_eq!(b.var("new_tftp_server_name"), "10.77.41.3", "{b:?}");
    assert_eq!(b.var("new_bootfile_name"), "pxelinux.0", "{b:?}");
    assert_eq!(b.var("new_filename"), "pxelinux.0", "the header's file");
    assert_eq!(
        b.var("new_next_server"),
        "10.77.41.3",
        "the header's siaddr"
    );
    assert_eq!(b.var("new_guestnet_hello"), "hello", "{b:?}");
    assert_eq!(b.var("new_guestnet_ips"), "10.77.41.9 10.77.41.10", "{b:?}");
    // The route is in the guest's table, and the lease file holds them.
    let r = route_172(&lab, &g);
    assert!(r.contains("via 10.77.41.254"), "guest routes: {r:?}");
    let leases = c.lease_file();
    for line in [
        "option ntp-servers 10.77.41.1,192.0.2.123;",
        "option domain-search \"corp.example.\", \"lab.example.\";",
        "option rfc3442-classless-static-routes 0,10,77,41,1,12,172,16,10,77,41,254;",
        "option tftp-server-name \"10.77.41.3\";",
        "option guestnet-hello \"hello\";",
        "filename \"pxelinux.0\";",
    ] {
        assert!(leases.contains(line), "lease file lacks {line}:\n{leases}");
    }

    // The static host gets its own boot file and option 224, and the
    // network's other options.
    let g2 = lab.add_dhcp_guest("g2", "vg2", "gnbr1", &pxe_mac());
    let c2 = Dhclient::start_with_conf(&lab.world, &g2, &DhclientOpts::named("pxe"), DHCLIENT_CONF);
    let b2 = c2.wait_bound(LEASE_TIMEOUT);
    assert_eq!(b2.var("new_ip_address"), "10.77.41.50");
    assert_eq!(b2.var("new_filename"), "ipxe.efi", "{b2:?}");
    assert_eq!(b2.var("new_bootfile_name"), "ipxe.efi", "{b2:?}");
    assert_eq!(b2.var("new_guestnet_hello"), "mine", "{b2:?}");
    assert_eq!(b2.var("new_guestnet_ips"), "10.77.41.9 10.77.41.10");
    assert_eq!(b2.var("new_ntp_servers"), "10.77.41.1 192.0.2.123");
}
