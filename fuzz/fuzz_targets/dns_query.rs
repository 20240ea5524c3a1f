//! Any datagram as a DNS query against a zone: never a panic. The zone
//! holds every kind of name: static and lease A records, typed records
//! (CNAME to a lease, an outside name and in a loop; TXT, SRV, MX), split
//! domains, and `upstream = false`.
#![no_main]

use guestnet_mode_api::{DnsName, DnsPlan, DnsRecord, DomainServers, RecordData, ResourceRecord};
use guestnetd::dns::{handle_query, Zone};
use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;
use std::sync::OnceLock;

fn zone() -> &'static Zone {
    static ZONE: OnceLock<Zone> = OnceLock::new();
    ZONE.get_or_init(|| {
        let rr = |name: &str, data| ResourceRecord {
            name: name.into(),
            data,
        };
        let cname = |t: &str| RecordData::Cname { target: t.into() };
        let mut z = Zone::from_plan(&DnsPlan {
            listen: Ipv4Addr::new(10, 0, 0, 1),
            domain: Some(DnsName::new("guest.lan").unwrap()),
            forwarders: vec![],
            records: vec![DnsRecord {
                name: "web".into(),
                ip: Ipv4Addr::new(10, 0, 0, 5),
            }],
            upstream: false,
            domain_servers: vec![DomainServers {
                domain: DnsName::new("corp.example").unwrap(),
                servers: vec!["10.0.0.53".parse().unwrap()],
            }],
            typed_records: vec![
                rr("www", cname("db")),
                rr("ext", cname("example.com.")),
                rr("l1", cname("l2")),
                rr("l2", cname("l1")),
                rr(
                    "_http._tcp",
                    RecordData::Srv {
                        priority: 0,
                        weight: 5,
                        port: 80,
                        target: "www".into(),
                    },
                ),
                rr(
                    "info",
                    RecordData::Txt {
                        text: vec!["hello".into(), "x".repeat(255)],
                    },
                ),
                rr(
                    "mail",
                    RecordData::Mx {
                        preference: 10,
                        exchange: "db".into(),
                    },
                ),
            ],
        });
        z.add_lease("db", Ipv4Addr::new(10, 0, 0, 6));
        z
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = handle_query(data, zone());
});
