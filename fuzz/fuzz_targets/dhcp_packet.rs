//! Any datagram into a DHCP pool: never a panic, never two clients on one
//! address, and every reply decodes.
#![no_main]

use guestnet_mode_api::{DhcpPlan, DnsName, StaticHost};
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
        }],
        max_leases_per_port: 4,
        options: Default::default(),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut pool = Pool::new(plan(), []);
    // Several packets in one input, split on a marker, with time passing.
    for (i, packet) in data.split(|b| *b == 0xa5).enumerate() {
        let now = 1_000 + 7 * i as u64;
        let _ = pool.handle(packet, now);
        let _ = pool.expire(now);
        let mut holders = HashMap::new();
        for l in pool.leases() {
            assert!(holders.insert(l.ip, l.mac).is_none(), "two leases for {}", l.ip);
        }
    }
});
