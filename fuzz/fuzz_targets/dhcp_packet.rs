//! Any datagram into a DHCP pool: never a panic, never two clients on one
//! address, and every reply decodes.
#![no_main]

use guestnet_mode_api::{DhcpOptions, DhcpPlan, DhcpRoute, DnsName, RawDhcpOption, StaticHost};
use guestnetd::dhcp::protocol::Pool;
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::net::Ipv4Addr;

fn plan() -> DhcpPlan {
    DhcpPlan {
        server: Ipv4Addr::new(10, 0, 0, 1),
        subnet: "10.0.0.0/24".parse().unwrap(),
        range_start: Ipv4Addr::new(10, 0, 0, 10),
        range_end: Ipv4Addr::new(10, 0, 0, 13),
        lease_time_secs: 60,
        router: Some(Ipv4Addr::new(10, 0, 0, 1)),
        dns_server: Some(Ipv4Addr::new(10, 0, 0, 1)),
        domain: Some(DnsName::new("guest.lan").unwrap()),
        mtu: Some(1400),
        hosts: vec![StaticHost {
            mac: "52:54:00:00:00:01".parse().unwrap(),
            ip: Ipv4Addr::new(10, 0, 0, 5),
            name: Some("web".into()),
            filename: None,
            options: vec![],
        }],
        max_leases_per_port: 4,
        // Every further option, so that a client's parameter list and
        // size reach their encoding.
        options: DhcpOptions {
            ntp: vec![Ipv4Addr::new(10, 0, 0, 2)],
            routes: vec![DhcpRoute {
                to: "172.16.0.0/12".parse().unwrap(),
                via: Ipv4Addr::new(10, 0, 0, 254),
            }],
            search: vec![DnsName::new("guest.lan").unwrap()],
            next_server: Some(Ipv4Addr::new(10, 0, 0, 3)),
            filename: Some("pxelinux.0".into()),
            raw: vec![RawDhcpOption {
                code: 224,
                value: vec![0xab; 200],
            }],
        },
    }
}

fuzz_target!(|data: &[u8]| {
    let mut pool = Pool::new(plan(), []);
    // Several packets in one input, split on a marker, with time passing.
    for (i, packet) in data.split(|b| *b == 0xa5).enumerate() {
        let now = 1_000 + 7 * i as u64;
        if let Some(reply) = pool.handle(packet, now).reply {
            assert!(reply.bytes.len() <= 1472, "a reply past the largest size");
        }
        let _ = pool.expire(now);
        let mut holders = HashMap::new();
        for l in pool.leases() {
            assert!(holders.insert(l.ip, l.mac).is_none(), "two leases for {}", l.ip);
        }
    }
});
