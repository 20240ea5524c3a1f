//! Any datagram as a DNS query against a zone: never a panic.
#![no_main]

use guestnet_mode_api::{DnsName, DnsRecord};
use guestnetd::dns::{handle_query, Zone};
use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;
use std::sync::OnceLock;

fn zone() -> &'static Zone {
    static ZONE: OnceLock<Zone> = OnceLock::new();
    ZONE.get_or_init(|| {
        let mut z = Zone::new(
            Some(DnsName::new("guest.lan").unwrap()),
            &[DnsRecord {
                name: "web".into(),
                ip: Ipv4Addr::new(10, 0, 0, 5),
            }],
        );
        z.add_lease("db", Ipv4Addr::new(10, 0, 0, 6));
        z
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = handle_query(data, zone());
});
