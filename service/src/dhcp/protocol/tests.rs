use super::*;
use guestnet_mode_api::StaticHost;

const NOW: u64 = 1_000_000;

fn plan(start: u8, end: u8) -> DhcpPlan {
    DhcpPlan {
        server: Ipv4Addr::new(10, 0, 0, 1),
        subnet: "10.0.0.0/24".parse().unwrap(),
        range_start: Ipv4Addr::new(10, 0, 0, start),
        range_end: Ipv4Addr::new(10, 0, 0, end),
        lease_time_secs: 3600,
        router: Some(Ipv4Addr::new(10, 0, 0, 1)),
        dns_server: Some(Ipv4Addr::new(10, 0, 0, 1)),
        domain: Some(guestnet_mode_api::DnsName::new("guest.lan").unwrap()),
        mtu: Some(1400),
        hosts: vec![StaticHost {
            mac: "52:54:00:00:00:99".parse().unwrap(),
            ip: Ipv4Addr::new(10, 0, 0, 5),
            name: Some("web".into()),
            filename: None,
            options: vec![],
        }],
        max_leases_per_port: 4,
        options: Default::default(),
    }
}

fn mac(n: u8) -> MacAddr {
    MacAddr([0x52, 0x54, 0, 0, 0, n])
}

fn send(pool: &mut Pool, msg: &Message) -> Outcome {
    pool.handle(&to_bytes(msg), NOW)
}

fn decode(reply: &Reply) -> Message {
    Message::decode(&mut Decoder::new(&reply.bytes)).unwrap()
}

fn discover(n: u8) -> Message {
    client_message(MessageType::Discover, mac(n), u32::from(n), vec![])
}

fn select(n: u8, ip: Ipv4Addr) -> Message {
    client_message(
        MessageType::Request,
        mac(n),
        u32::from(n),
        vec![
            DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 0, 1)),
            DhcpOption::RequestedIpAddress(ip),
            DhcpOption::Hostname(format!("Guest_{n}")),
        ],
    )
}

/// DISCOVER then REQUEST; returns the address granted.
fn dora(pool: &mut Pool, n: u8) -> Ipv4Addr {
    let offer = send(pool, &discover(n)).reply.expect("an offer");
    let ip = decode(&offer).yiaddr();
    let ack = send(pool, &select(n, ip));
    let reply = decode(ack.reply.as_ref().expect("an ack"));
    assert_eq!(reply.opts().msg_type(), Some(MessageType::Ack));
    ip
}

#[test]
fn a_full_exchange_grants_a_lease_with_the_networks_options() {
    let mut pool = Pool::new(plan(10, 20), []);
    let out = send(&mut pool, &discover(1));
    let offer = decode(out.reply.as_ref().unwrap());
    assert_eq!(out.reply.as_ref().unwrap().to, Destination::Broadcast);
    assert_eq!(offer.opcode(), Opcode::BootReply);
    assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(10, 0, 0, 10));
    assert!(out.records.is_empty(), "an offer needs no durability");

    let out = send(&mut pool, &select(1, offer.yiaddr()));
    let ack = decode(out.reply.as_ref().unwrap());
    let o = ack.opts();
    assert_eq!(
        o.get(OptionCode::SubnetMask),
        Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
    );
    assert_eq!(
        o.get(OptionCode::Router),
        Some(&DhcpOption::Router(vec![Ipv4Addr::new(10, 0, 0, 1)]))
    );
    assert_eq!(
        o.get(OptionCode::DomainNameServer),
        Some(&DhcpOption::DomainNameServer(vec![Ipv4Addr::new(
            10, 0, 0, 1
        )]))
    );
    assert_eq!(
        o.get(OptionCode::DomainName),
        Some(&DhcpOption::DomainName("guest.lan".into()))
    );
    assert_eq!(
        o.get(OptionCode::AddressLeaseTime),
        Some(&DhcpOption::AddressLeaseTime(3600))
    );
    assert_eq!(
        o.get(OptionCode::InterfaceMtu),
        Some(&DhcpOption::InterfaceMtu(1400))
    );
    assert_eq!(out.events.len(), 1);
    assert_eq!(out.events[0].change, LeaseChange::Added);
    assert_eq!(out.events[0].lease.hostname.as_deref(), Some("guest-1"));
    assert_eq!(
        out.records,
        vec![Record::Grant(out.events[0].lease.clone())]
    );
    assert_eq!(pool.lease_count(), 1);
}

#[test]
fn isolated_networks_offer_no_router() {
    let mut p = plan(10, 20);
    p.router = None;
    let mut pool = Pool::new(p, []);
    let offer = decode(send(&mut pool, &discover(1)).reply.as_ref().unwrap());
    assert!(offer.opts().get(OptionCode::Router).is_none());
}

#[test]
fn two_clients_never_share_an_address() {
    let mut pool = Pool::new(plan(10, 200), []);
    let mut seen = HashSet::new();
    for n in 1..=50 {
        assert!(seen.insert(dora(&mut pool, n)));
    }
    // Interleaved discovers are offered distinct addresses too.
    let a = decode(send(&mut pool, &discover(100)).reply.as_ref().unwrap()).yiaddr();
    let b = decode(send(&mut pool, &discover(101)).reply.as_ref().unwrap()).yiaddr();
    assert_ne!(a, b);
}

#[test]
fn static_hosts_get_their_address_and_the_pool_never_hands_it_out() {
    let mut pool = Pool::new(plan(4, 6), []);
    let ips: Vec<_> = (1..=2).map(|n| dora(&mut pool, n)).collect();
    assert!(!ips.contains(&Ipv4Addr::new(10, 0, 0, 5)), "{ips:?}");
    let web = 0x99;
    let offer = decode(send(&mut pool, &discover(web)).reply.as_ref().unwrap());
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(10, 0, 0, 5));
    let out = send(&mut pool, &select(web, offer.yiaddr()));
    assert_eq!(out.events[0].lease.hostname.as_deref(), Some("web"));
}

#[test]
fn an_exhausted_pool_offers_nothing_and_keeps_serving_its_clients() {
    let mut pool = Pool::new(plan(10, 11), []);
    let a = dora(&mut pool, 1);
    dora(&mut pool, 2);
    assert!(send(&mut pool, &discover(3)).reply.is_none());
    for n in 0..200 {
        assert!(send(&mut pool, &discover(160 + (n % 80) as u8))
            .reply
            .is_none());
    }
    // The first client renews as before.
    let mut renew = client_message(MessageType::Request, mac(1), 9, vec![]);
    renew.set_ciaddr(a);
    let out = send(&mut pool, &renew);
    assert_eq!(out.reply.as_ref().unwrap().to, Destination::Client(a));
    assert_eq!(out.events[0].change, LeaseChange::Renewed);
}

#[test]
fn a_returning_client_gets_its_old_address() {
    let mut pool = Pool::new(plan(10, 100), []);
    let first = dora(&mut pool, 1);
    let mut release = client_message(MessageType::Release, mac(1), 2, vec![]);
    release.set_ciaddr(first);
    let out = send(&mut pool, &release);
    assert_eq!(out.events[0].change, LeaseChange::Removed);
    assert_eq!(out.records, vec![Record::Remove { mac: mac(1) }]);
    assert!(out.reply.is_none());
    dora(&mut pool, 2);
    assert_eq!(dora(&mut pool, 1), first);
}

#[test]
fn requests_for_wrong_or_foreign_addresses_are_naked() {
    let mut pool = Pool::new(plan(10, 100), []);
    let held = dora(&mut pool, 1);
    // INIT-REBOOT with an address outside the subnet.
    let foreign = client_message(
        MessageType::Request,
        mac(2),
        3,
        vec![DhcpOption::RequestedIpAddress(Ipv4Addr::new(
            192, 168, 1, 7,
        ))],
    );
    let nak = decode(send(&mut pool, &foreign).reply.as_ref().unwrap());
    assert_eq!(nak.opts().msg_type(), Some(MessageType::Nak));
    // Someone else's address.
    let theft = client_message(
        MessageType::Request,
        mac(2),
        4,
        vec![DhcpOption::RequestedIpAddress(held)],
    );
    let out = send(&mut pool, &theft);
    assert_eq!(
        decode(out.reply.as_ref().unwrap()).opts().msg_type(),
        Some(MessageType::Nak)
    );
    assert!(out.events.is_empty());
    // A REQUEST for another server's offer is silently dropped.
    let other = client_message(
        MessageType::Request,
        mac(3),
        5,
        vec![
            DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 0, 2)),
            DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 0, 50)),
        ],
    );
    assert_eq!(send(&mut pool, &other), Outcome::default());
}

#[test]
fn declined_addresses_leave_the_pool_for_a_while() {
    let mut pool = Pool::new(plan(10, 11), []);
    let ip = dora(&mut pool, 1);
    let decline = client_message(
        MessageType::Decline,
        mac(1),
        6,
        vec![DhcpOption::RequestedIpAddress(ip)],
    );
    let out = send(&mut pool, &decline);
    assert_eq!(out.events[0].change, LeaseChange::Removed);
    let other = dora(&mut pool, 2);
    assert_ne!(other, ip);
    assert!(send(&mut pool, &discover(3)).reply.is_none());
    pool.expire(NOW + DECLINE_SECS + 1);
    assert!(pool
        .handle(&to_bytes(&discover(3)), NOW + DECLINE_SECS + 2)
        .reply
        .is_some());
}

#[test]
fn leases_expire_with_an_event_and_a_record() {
    let mut pool = Pool::new(plan(10, 20), []);
    dora(&mut pool, 1);
    assert!(pool.expire(NOW + 3599).events.is_empty());
    let out = pool.expire(NOW + 3600);
    assert_eq!(out.events.len(), 1);
    assert_eq!(out.events[0].change, LeaseChange::Removed);
    assert_eq!(out.records, vec![Record::Remove { mac: mac(1) }]);
    assert_eq!(pool.lease_count(), 0);
}

#[test]
fn relayed_requests_are_answered_to_the_relay_for_our_subnet_only() {
    let mut pool = Pool::new(plan(10, 20), []);
    let mut msg = discover(1);
    msg.set_giaddr(Ipv4Addr::new(10, 0, 0, 250));
    let out = send(&mut pool, &msg);
    assert_eq!(
        out.reply.as_ref().unwrap().to,
        Destination::Relay(Ipv4Addr::new(10, 0, 0, 250))
    );
    assert_eq!(
        decode(out.reply.as_ref().unwrap()).giaddr(),
        Ipv4Addr::new(10, 0, 0, 250)
    );
    let mut foreign = discover(2);
    foreign.set_giaddr(Ipv4Addr::new(172, 16, 0, 1));
    assert!(send(&mut pool, &foreign).reply.is_none());
}

#[test]
fn inform_gets_options_without_a_lease() {
    let mut pool = Pool::new(plan(10, 20), []);
    let mut inform = client_message(MessageType::Inform, mac(1), 7, vec![]);
    inform.set_ciaddr(Ipv4Addr::new(10, 0, 0, 30));
    let out = send(&mut pool, &inform);
    let ack = decode(out.reply.as_ref().unwrap());
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    assert!(ack.opts().get(OptionCode::AddressLeaseTime).is_none());
    assert_eq!(
        out.reply.as_ref().unwrap().to,
        Destination::Client(Ipv4Addr::new(10, 0, 0, 30))
    );
    assert!(out.events.is_empty());
}

#[test]
fn replayed_leases_are_kept_when_they_fit() {
    let lease = |n: u8, ip: Ipv4Addr| Lease {
        mac: mac(n),
        ip,
        hostname: None,
        client_id: None,
        expires: NOW + 100,
    };
    let pool = Pool::new(
        plan(10, 20),
        [
            lease(1, Ipv4Addr::new(10, 0, 0, 12)),
            lease(2, Ipv4Addr::new(192, 168, 9, 9)), // another subnet now
            lease(3, Ipv4Addr::new(10, 0, 0, 5)),    // a static host's address
        ],
    );
    assert_eq!(pool.lease_count(), 1);
    assert!(pool.lease_of(&mac(1)).is_some());
}

#[test]
fn hostile_packets_are_dropped() {
    let mut pool = Pool::new(plan(10, 20), []);
    let good = to_bytes(&discover(1));
    // Truncations of a good packet.
    for len in 0..good.len() {
        let _ = pool.handle(&good[..len], NOW);
    }
    // A reply sent to the server, a wrong hardware type, a multicast MAC.
    let mut reply = discover(2);
    reply.set_opcode(Opcode::BootReply);
    assert!(send(&mut pool, &reply).reply.is_none());
    let mut token_ring = discover(3);
    token_ring.set_htype(HType::from(6u8));
    assert!(send(&mut pool, &token_ring).reply.is_none());
    let mut mcast = discover(4);
    mcast.set_chaddr(&[1, 0, 0x5e, 0, 0, 1]);
    assert!(send(&mut pool, &mcast).reply.is_none());
    // Oversized.
    assert!(pool.handle(&vec![0u8; MAX_PACKET + 1], NOW).reply.is_none());
    // An option whose length runs past the packet's end.
    let mut lying = good.clone();
    lying.truncate(240);
    lying.extend_from_slice(&[53, 1, 1, 12, 200, b'x']);
    let _ = pool.handle(&lying, NOW);
    // Still serving.
    assert!(send(&mut pool, &discover(5)).reply.is_some());
}

#[test]
fn a_client_that_did_not_ask_for_broadcast_is_answered_at_its_hardware_address() {
    let mut pool = Pool::new(plan(10, 20), []);
    let mut d = discover(1);
    d.set_flags(Flags::default());
    let offer = send(&mut pool, &d).reply.expect("an offer");
    let ip = decode(&offer).yiaddr();
    assert_eq!(offer.to, Destination::Hardware { ip, mac: mac(1) });
    let mut r = select(1, ip);
    r.set_flags(Flags::default());
    let ack = send(&mut pool, &r).reply.expect("an ack");
    assert_eq!(ack.to, Destination::Hardware { ip, mac: mac(1) });

    // A NAK goes to everyone: the client may not hold the address it asked for.
    let mut wrong = select(2, ip);
    wrong.set_flags(Flags::default());
    let nak = send(&mut pool, &wrong).reply.expect("a nak");
    assert_eq!(decode(&nak).opts().msg_type(), Some(MessageType::Nak));
    assert_eq!(nak.to, Destination::Broadcast);
}

fn decline_of(n: u8, ip: Ipv4Addr) -> Message {
    client_message(
        MessageType::Decline,
        mac(n),
        u32::from(n),
        vec![DhcpOption::RequestedIpAddress(ip)],
    )
}

/// A MAC from a 16-bit number, for floods of spoofed clients.
fn mac16(n: u16) -> MacAddr {
    let [hi, lo] = n.to_be_bytes();
    MacAddr([0x52, 0x54, 0, 1, hi, lo])
}

#[test]
fn a_decline_is_believed_only_from_the_holder_or_the_offered_client() {
    let mut pool = Pool::new(plan(10, 12), []);
    let held = dora(&mut pool, 1);
    // Client 2 declines client 1's address, and an address nobody has.
    for ip in [
        held,
        Ipv4Addr::new(10, 0, 0, 11),
        Ipv4Addr::new(10, 0, 0, 12),
    ] {
        assert_eq!(send(&mut pool, &decline_of(2, ip)), Outcome::default());
    }
    assert_eq!(pool.lease_of(&mac(1)).map(|l| l.ip), Some(held));
    assert_eq!(pool.table_sizes()[3], 0, "nothing declined");
    // The pool still serves others all of its free addresses.
    let a = dora(&mut pool, 3);
    let b = dora(&mut pool, 4);
    assert!(a != held && b != held && a != b);
    // The client that was offered an address may decline it.
    let offer = send(&mut pool, &discover(5));
    assert!(offer.reply.is_none(), "the pool is full");
    let mut pool = Pool::new(plan(10, 11), []);
    let offered = decode(send(&mut pool, &discover(6)).reply.as_ref().unwrap()).yiaddr();
    assert!(send(&mut pool, &decline_of(6, offered)).events.is_empty());
    assert_eq!(pool.table_sizes()[3], 1);
    assert_ne!(dora(&mut pool, 7), offered);
}

#[test]
fn a_flood_of_spoofed_clients_grows_no_table_past_its_limit() {
    // A /16 pool, and 12,000 MACs each DISCOVERing and declining: three
    // times what the offers and declines may hold.
    let mut p = plan(10, 20);
    p.subnet = "10.0.0.0/16".parse().unwrap();
    p.range_end = Ipv4Addr::new(10, 0, 255, 254);
    p.max_leases_per_port = LEASES_PER_PORT_MAX;
    let mut pool = Pool::new(p, []);
    for i in 0..12_000u32 {
        let m = mac16(i as u16);
        let now = NOW + u64::from(i / 1000);
        let msg = client_message(MessageType::Discover, m, i, vec![]);
        let Some(offer) = pool.handle_from(&to_bytes(&msg), now, Some(7)).reply else {
            continue;
        };
        let ip = decode(&offer).yiaddr();
        let decline = client_message(
            MessageType::Decline,
            m,
            i,
            vec![DhcpOption::RequestedIpAddress(ip)],
        );
        pool.handle_from(&to_bytes(&decline), now, Some(7));
        pool.expire(now);
    }
    let [leases, offers, offered, declined, remembered, claims] = pool.table_sizes();
    assert!(leases <= LEASES_MAX);
    assert!(
        offers <= OFFERS_MAX && offered <= OFFERS_MAX,
        "{offers} {offered}"
    );
    assert!(declined <= DECLINED_MAX, "{declined}");
    assert!(remembered <= REMEMBERED_MAX);
    assert!(claims <= 1);
    assert!(pool.claims_of(7) <= DECLINED_MAX + OFFERS_MAX);
    // Another client is still served.
    let out = pool.handle_from(&to_bytes(&discover(1)), NOW + 100, Some(8));
    assert!(out.reply.is_some());
    // Everything goes back once its time is up.
    pool.expire(NOW + 100 + DECLINE_SECS + OFFER_SECS);
    assert_eq!(pool.table_sizes(), [0, 0, 0, 0, 0, 0]);
}

const LEASES_PER_PORT_MAX: u32 = guestnet_mode_api::definition::LEASES_PER_PORT_MAX;

/// DISCOVER then REQUEST from `port`; the address granted, if any.
fn dora_from(pool: &mut Pool, n: u8, port: PortId) -> Option<Ipv4Addr> {
    let offer = pool
        .handle_from(&to_bytes(&discover(n)), NOW, Some(port))
        .reply?;
    let ip = decode(&offer).yiaddr();
    let ack = pool.handle_from(&to_bytes(&select(n, ip)), NOW, Some(port));
    let reply = decode(ack.reply.as_ref()?);
    (reply.opts().msg_type() == Some(MessageType::Ack)).then_some(ip)
}

#[test]
fn one_port_gets_at_most_its_limit_and_others_are_still_served() {
    let mut p = plan(10, 200);
    p.max_leases_per_port = 3;
    let mut pool = Pool::new(p, []);
    let got: Vec<_> = (1..=20)
        .filter_map(|n| dora_from(&mut pool, n, 1))
        .collect();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(pool.claims_of(1), 3);
    // INIT-REBOOT straight to a REQUEST, without a DISCOVER, is limited too.
    let init_reboot = client_message(
        MessageType::Request,
        mac(30),
        30,
        vec![DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 0, 150))],
    );
    assert!(pool
        .handle_from(&to_bytes(&init_reboot), NOW, Some(1))
        .reply
        .is_none());
    // Its own clients renew; another port is served.
    let renew = pool.handle_from(&to_bytes(&select(1, got[0])), NOW + 10, Some(1));
    assert!(renew.reply.is_some());
    assert!(dora_from(&mut pool, 40, 2).is_some());
    // A release makes room on the port.
    let mut release = client_message(MessageType::Release, mac(1), 1, vec![]);
    release.set_ciaddr(got[0]);
    pool.handle_from(&to_bytes(&release), NOW, Some(1));
    assert_eq!(pool.claims_of(1), 2);
    assert!(dora_from(&mut pool, 41, 1).is_some());
    // A DECLINE of a lease from another port than its holder's is ignored.
    let lease = pool
        .lease_of(&mac(3))
        .map(|l| l.ip)
        .expect("client 3's lease");
    let spoof = pool.handle_from(&to_bytes(&decline_of(3, lease)), NOW, Some(2));
    assert_eq!(spoof, Outcome::default());
    assert!(pool.lease_of(&mac(3)).is_some());
    // Declines count against the port until they end.
    let ip = dora_from(&mut pool, 2, 1).map_or(got[1], |ip| ip);
    pool.handle_from(&to_bytes(&decline_of(2, ip)), NOW, Some(1));
    assert_eq!(pool.claims_of(1), 3);
    assert!(dora_from(&mut pool, 42, 1).is_none());
    pool.expire(NOW + DECLINE_SECS + 1);
    // Unknown ports are limited per MAC only.
    assert!((50..60).all(|n| pool
        .handle(&to_bytes(&discover(n)), NOW + DECLINE_SECS + 2)
        .reply
        .is_some()));
}

#[test]
fn a_large_replay_is_linear() {
    // 60,000 leases: a quadratic insertion would take minutes.
    let mut p = plan(10, 20);
    p.subnet = "10.0.0.0/16".parse().unwrap();
    p.range_end = Ipv4Addr::new(10, 0, 255, 254);
    let leases = (0..60_000u32).map(|i| Lease {
        mac: mac16(i as u16),
        ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 10)) + i),
        hostname: None,
        client_id: None,
        expires: NOW + 100,
    });
    let t = std::time::Instant::now();
    let pool = Pool::new(p, leases);
    assert_eq!(pool.lease_count(), 60_000);
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
}

// ---- further options (API 1.1 DhcpOptions) ----------------------------------

use guestnet_mode_api::{DhcpOptions, DhcpRoute, DnsName, RawDhcpOption};
use options::{classless_routes, search_list, Extra};

fn net(s: &str) -> guestnet_mode_api::ipnet::Ipv4Net {
    s.parse().unwrap()
}

#[test]
fn classless_routes_encode_as_rfc_3442_says() {
    // RFC 3442's table of destination descriptors, each followed by the
    // router's four octets.
    let gw = Ipv4Addr::new(10, 0, 0, 1);
    let cases: &[(&str, &[u8])] = &[
        ("0.0.0.0/0", &[0]),
        ("10.0.0.0/8", &[8, 10]),
        ("10.0.0.0/24", &[24, 10, 0, 0]),
        ("10.17.0.0/16", &[16, 10, 17]),
        ("10.27.129.0/24", &[24, 10, 27, 129]),
        ("10.229.0.128/25", &[25, 10, 229, 0, 128]),
        ("10.198.122.47/32", &[32, 10, 198, 122, 47]),
    ];
    for (to, descriptor) in cases {
        let mut want = descriptor.to_vec();
        want.extend([10, 0, 0, 1]);
        assert_eq!(classless_routes([(net(to), gw)]), want, "{to}");
    }
    // Host bits past the prefix are not sent.
    assert_eq!(
        classless_routes([(net("10.1.2.3/8"), gw)]),
        [8, 10, 10, 0, 0, 1]
    );
}

#[test]
fn the_search_list_encodes_as_rfc_3397_says() {
    // RFC 3397 section 2's example, with the pointer to "apple.com".
    let names = [
        DnsName::new("eng.apple.com").unwrap(),
        DnsName::new("marketing.apple.com").unwrap(),
    ];
    let mut want = vec![3];
    want.extend(b"eng");
    want.push(5);
    want.extend(b"apple");
    want.push(3);
    want.extend(b"com");
    want.push(0);
    want.push(9);
    want.extend(b"marketing");
    want.extend([0xc0, 0x04]);
    assert_eq!(search_list(&names.iter().collect::<Vec<_>>()), want);
    // A name given twice is a pointer to the first.
    let twice = [names[0].clone(), names[0].clone()];
    let enc = search_list(&twice.iter().collect::<Vec<_>>());
    assert_eq!(&enc[enc.len() - 2..], [0xc0, 0x00]);
}

fn plan_with_options() -> DhcpPlan {
    let mut p = plan(10, 20);
    p.options = DhcpOptions {
        ntp: vec![Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(192, 0, 2, 123)],
        routes: vec![DhcpRoute {
            to: net("172.16.0.0/12"),
            via: Ipv4Addr::new(10, 0, 0, 254),
        }],
        search: vec![
            DnsName::new("guest.lan").unwrap(),
            DnsName::new("corp.example").unwrap(),
        ],
        next_server: Some(Ipv4Addr::new(10, 0, 0, 3)),
        filename: Some("pxelinux.0".into()),
        raw: vec![
            RawDhcpOption {
                code: 224,
                value: b"hello".to_vec(),
            },
            RawDhcpOption {
                code: 225,
                value: vec![1, 2, 3],
            },
        ],
    };
    p
}

fn discover_asking(n: u8, codes: &[u8]) -> Message {
    let asked = codes.iter().map(|c| OptionCode::from(*c)).collect();
    client_message(
        MessageType::Discover,
        mac(n),
        u32::from(n),
        vec![DhcpOption::ParameterRequestList(asked)],
    )
}

/// The raw value of option `code` in a reply, pieces joined (RFC 3396).
fn option_bytes(reply: &Reply, code: u8) -> Option<Vec<u8>> {
    let b = &reply.bytes;
    assert_eq!(b[236..240], [99, 130, 83, 99], "magic cookie");
    let mut i = 240;
    let mut found: Option<Vec<u8>> = None;
    while i < b.len() && b[i] != 255 {
        if b[i] == 0 {
            i += 1;
            continue;
        }
        let len = usize::from(b[i + 1]);
        if b[i] == code {
            found
                .get_or_insert_with(Vec::new)
                .extend(&b[i + 2..i + 2 + len]);
        }
        i += 2 + len;
    }
    found
}

#[test]
fn further_options_go_only_to_clients_that_ask_for_them() {
    let mut pool = Pool::new(plan_with_options(), []);
    // No parameter request list: none of them, but the header's boot
    // server and file, which PXE ROMs read unasked.
    let out = send(&mut pool, &discover(1));
    let reply = out.reply.as_ref().unwrap();
    for code in [42, 66, 67, 119, 121, 249, 224, 225] {
        assert_eq!(option_bytes(reply, code), None, "option {code} unasked");
    }
    let offer = decode(reply);
    assert_eq!(offer.siaddr(), Ipv4Addr::new(10, 0, 0, 3));
    // The decoder keeps the field's terminator.
    let file = offer.fname_str().unwrap().unwrap();
    assert_eq!(file.trim_end_matches('\0'), "pxelinux.0");
    // The basics are always there.
    assert!(offer.opts().get(OptionCode::Router).is_some());

    // Asking for some gets exactly those.
    let out = send(&mut pool, &discover_asking(2, &[1, 3, 42, 224]));
    let reply = out.reply.as_ref().unwrap();
    assert_eq!(
        option_bytes(reply, 42).unwrap(),
        [10, 0, 0, 2, 192, 0, 2, 123]
    );
    assert_eq!(option_bytes(reply, 224).unwrap(), b"hello");
    for code in [66, 67, 119, 121, 249, 225] {
        assert_eq!(option_bytes(reply, code), None, "option {code} unasked");
    }
}

#[test]
fn each_further_option_is_encoded_when_asked_for() {
    let mut pool = Pool::new(plan_with_options(), []);
    let asked = [121, 249, 119, 42, 66, 67, 224, 225];
    let out = send(&mut pool, &discover_asking(1, &asked));
    let reply = out.reply.as_ref().unwrap();
    // 121 starts with the default route via the router (RFC 3442: a client
    // that gets 121 ignores option 3), then the configured route.
    let routes = [0, 10, 0, 0, 1, 12, 172, 16, 10, 0, 0, 254];
    assert_eq!(option_bytes(reply, 121).unwrap(), routes);
    assert_eq!(option_bytes(reply, 249).unwrap(), routes);
    assert_eq!(option_bytes(reply, 66).unwrap(), b"10.0.0.3");
    assert_eq!(option_bytes(reply, 67).unwrap(), b"pxelinux.0");
    assert_eq!(option_bytes(reply, 225).unwrap(), [1, 2, 3]);
    // dhcproto reads what we wrote, as a client would.
    let offer = decode(reply);
    let o = offer.opts();
    assert_eq!(
        o.get(OptionCode::ClasslessStaticRoute),
        Some(&DhcpOption::ClasslessStaticRoute(vec![
            (net("0.0.0.0/0"), Ipv4Addr::new(10, 0, 0, 1)),
            (net("172.16.0.0/12"), Ipv4Addr::new(10, 0, 0, 254)),
        ]))
    );
    match o.get(OptionCode::DomainSearch) {
        Some(DhcpOption::DomainSearch(names)) => {
            let names: Vec<String> = names.iter().map(|n| n.to_ascii()).collect();
            assert_eq!(names, ["guest.lan.", "corp.example."]);
        }
        other => panic!("no search list: {other:?}"),
    }
    assert_eq!(
        o.get(OptionCode::NtpServers),
        Some(&DhcpOption::NtpServers(vec![
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(192, 0, 2, 123)
        ]))
    );
    // The ACK carries them as the OFFER did.
    let mut select = select(1, offer.yiaddr());
    select.opts_mut().insert(DhcpOption::ParameterRequestList(
        asked.iter().map(|c| OptionCode::from(*c)).collect(),
    ));
    let ack = send(&mut pool, &select);
    assert_eq!(
        option_bytes(ack.reply.as_ref().unwrap(), 121).unwrap(),
        routes
    );
}

#[test]
fn isolated_networks_get_no_default_route_in_121_and_a_given_default_wins() {
    let mut p = plan_with_options();
    p.router = None;
    let mut pool = Pool::new(p, []);
    let out = send(&mut pool, &discover_asking(1, &[121]));
    assert_eq!(
        option_bytes(out.reply.as_ref().unwrap(), 121).unwrap(),
        [12, 172, 16, 10, 0, 0, 254]
    );
    let mut p = plan_with_options();
    p.options.routes.push(DhcpRoute {
        to: net("0.0.0.0/0"),
        via: Ipv4Addr::new(10, 0, 0, 253),
    });
    let mut pool = Pool::new(p, []);
    let out = send(&mut pool, &discover_asking(1, &[121]));
    assert_eq!(
        option_bytes(out.reply.as_ref().unwrap(), 121).unwrap(),
        [12, 172, 16, 10, 0, 0, 254, 0, 10, 0, 0, 253]
    );
}

#[test]
fn options_that_do_not_fit_the_clients_size_are_left_out_by_priority() {
    // 30 raw options of 150 bytes: far more than 576 bytes.
    let mut p = plan_with_options();
    p.options.raw = (0..30)
        .map(|i| RawDhcpOption {
            code: 160 + i,
            value: vec![i; 150],
        })
        .collect();
    let mut pool = Pool::new(p, []);
    let mut asked: Vec<u8> = vec![121, 119, 42];
    asked.extend(160..190);
    let out = send(&mut pool, &discover_asking(1, &asked));
    let reply = out.reply.as_ref().unwrap();
    // No option 57: a 576-byte datagram, 548 bytes of DHCP.
    assert!(reply.bytes.len() <= 548, "{} bytes", reply.bytes.len());
    for code in [121, 119, 42, 160] {
        assert!(option_bytes(reply, code).is_some(), "option {code} kept");
    }
    assert_eq!(option_bytes(reply, 161), None, "no room for a second");
    assert!(decode(reply).opts().msg_type().is_some());

    // A client that takes 1500 bytes gets more of them.
    let mut big = discover_asking(2, &asked);
    big.opts_mut().insert(DhcpOption::MaxMessageSize(1500));
    let out = send(&mut pool, &big);
    let reply = out.reply.as_ref().unwrap();
    assert!(reply.bytes.len() <= 1472, "{} bytes", reply.bytes.len());
    assert!(option_bytes(reply, 165).is_some());
    assert_eq!(option_bytes(reply, 189), None);
    // A size under the legal minimum is read as the minimum.
    let mut tiny = discover_asking(3, &asked);
    tiny.opts_mut().insert(DhcpOption::MaxMessageSize(100));
    let out = send(&mut pool, &tiny);
    assert!(option_bytes(out.reply.as_ref().unwrap(), 160).is_some());
}

#[test]
fn long_options_are_split_and_unchecked_plans_stay_bounded() {
    // 40 routes (past the API's 32) and raw options naming guestnet's own
    // codes, as a plan that skipped Plan::check could carry.
    let mut p = plan_with_options();
    p.options.routes = (0..40)
        .map(|i| DhcpRoute {
            to: net(&format!("172.{i}.0.0/16")),
            via: Ipv4Addr::new(10, 0, 0, 254),
        })
        .collect();
    p.options.raw = vec![
        RawDhcpOption {
            code: 3,
            value: vec![1, 1, 1, 1],
        },
        RawDhcpOption {
            code: 255,
            value: vec![],
        },
        RawDhcpOption {
            code: 224,
            value: vec![7; 300],
        },
        RawDhcpOption {
            code: 226,
            value: vec![],
        },
    ];
    p.options.filename = Some("x".repeat(200));
    let mut pool = Pool::new(p, []);
    let mut m = discover_asking(1, &[3, 121, 224, 226, 255]);
    m.opts_mut().insert(DhcpOption::MaxMessageSize(1500));
    let out = send(&mut pool, &m);
    let reply = out.reply.as_ref().unwrap();
    // 1 default + 32 routes of 7 bytes: more than one 255-byte piece.
    let routes = option_bytes(reply, 121).unwrap();
    assert_eq!(routes.len(), 5 + 32 * 7);
    let offer = decode(reply);
    match offer.opts().get(OptionCode::ClasslessStaticRoute) {
        Some(DhcpOption::ClasslessStaticRoute(r)) => assert_eq!(r.len(), 33),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        offer.opts().get(OptionCode::Router),
        Some(&DhcpOption::Router(vec![Ipv4Addr::new(10, 0, 0, 1)]))
    );
    assert_eq!(option_bytes(reply, 224), None, "over 255 bytes");
    assert_eq!(option_bytes(reply, 226).unwrap(), b"", "an empty option");
    assert!(
        offer.fname().is_none(),
        "a file name too long for the header"
    );
}

#[test]
fn inform_gets_the_options_it_asks_for() {
    let mut pool = Pool::new(plan_with_options(), []);
    let mut inform = client_message(
        MessageType::Inform,
        mac(1),
        7,
        vec![DhcpOption::ParameterRequestList(vec![OptionCode::from(42)])],
    );
    inform.set_ciaddr(Ipv4Addr::new(10, 0, 0, 30));
    let out = send(&mut pool, &inform);
    assert!(option_bytes(out.reply.as_ref().unwrap(), 42).is_some());
}

#[test]
fn append_leaves_out_what_does_not_fit() {
    let mut buf = vec![1, 2, 3, 255];
    let extras = [
        Extra {
            code: 200,
            data: vec![0; 10],
        },
        Extra {
            code: 201,
            data: vec![0; 2],
        },
    ];
    let dropped = options::append(&mut buf, &extras, 3 + 1 + 6);
    assert_eq!(dropped, [200]);
    assert_eq!(buf, [1, 2, 3, 201, 2, 0, 0, 255]);
}

#[test]
fn a_static_host_gets_its_own_boot_file_and_options() {
    let mut p = plan_with_options();
    p.hosts[0].filename = Some("ipxe.efi".into());
    p.hosts[0].options = vec![
        RawDhcpOption {
            code: 224,
            value: b"mine".to_vec(),
        },
        RawDhcpOption {
            code: 230,
            value: vec![9],
        },
    ];
    let mut pool = Pool::new(p, []);
    let asked = [67, 224, 225, 230];
    let host_mac = MacAddr([0x52, 0x54, 0, 0, 0, 0x99]);
    let mut m = discover_asking(1, &asked);
    m.set_chaddr(&host_mac.0);
    let out = send(&mut pool, &m);
    let reply = out.reply.as_ref().unwrap();
    assert_eq!(decode(reply).yiaddr(), Ipv4Addr::new(10, 0, 0, 5));
    assert_eq!(option_bytes(reply, 67).unwrap(), b"ipxe.efi");
    let file = decode(reply).fname_str().unwrap().unwrap().to_owned();
    assert_eq!(file.trim_end_matches('\0'), "ipxe.efi");
    assert_eq!(option_bytes(reply, 224).unwrap(), b"mine");
    assert_eq!(
        option_bytes(reply, 225).unwrap(),
        [1, 2, 3],
        "the network's"
    );
    assert_eq!(option_bytes(reply, 230).unwrap(), [9]);
    // Anyone else gets the network's.
    let out = send(&mut pool, &discover_asking(2, &asked));
    let reply = out.reply.as_ref().unwrap();
    assert_eq!(option_bytes(reply, 67).unwrap(), b"pxelinux.0");
    assert_eq!(option_bytes(reply, 224).unwrap(), b"hello");
    assert_eq!(option_bytes(reply, 230), None);
}
