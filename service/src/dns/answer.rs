//! Deciding what to do with a query: pure (bytes and a zone in, an
//! [`Action`] out, no I/O), total (every input gives an answer, never a
//! panic) and bounded (the work and memory follow the input's length), so
//! the fuzz targets can call it directly.

use super::framing::{self, Frame};
use super::query::{self, EdnsInfo, ParsedQuery, QueryError, HEADER_LEN};
use super::reply::{self, Answers, Owner, Rdata, Rr};
use super::zone::{Node, Resolution, Route, Zone, STATIC_TTL};
use hickory_proto::op::{Header, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};
use std::net::SocketAddr;
use std::sync::Arc;

/// The largest query taken over UDP (and read from the socket).
pub const MAX_UDP_QUERY: usize = 4096;

/// How the query came, which sets what may be sent back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What to do with a message a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing to send: not a query, or not even a header.
    Drop,
    /// Send this back.
    Reply(Vec<u8>),
    /// Send this error back (FORMERR, NOTIMP); a TCP client is then
    /// disconnected, since its stream can no longer be trusted.
    Reject(Vec<u8>),
    /// Not a name of the zone: ask the upstream servers (or a domain's).
    Forward(Forward),
}

/// A query to forward, with what is needed to answer its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// The client's message as it came.
    pub query: Vec<u8>,
    /// The client's header (its ID, RD and CD bits).
    pub header: Header,
    /// Upstream replies must carry this same question.
    pub question: Query,
    pub edns: Option<EdnsInfo>,
    /// The most the reply to this client may hold.
    pub reply_limit: usize,
    /// The servers of the name's domain (split DNS); `None`: the
    /// network's upstream servers.
    pub servers: Option<Arc<[SocketAddr]>>,
}

impl Forward {
    /// The query as sent upstream: the client's bytes under a fresh ID.
    pub fn query_with_id(&self, id: u16) -> Vec<u8> {
        let mut out = self.query.clone();
        out[..2].copy_from_slice(&id.to_be_bytes());
        out
    }

    fn question_bytes(&self) -> &[u8] {
        let len = self.query.len() - HEADER_LEN;
        let question_len = len.min(self.question_wire_len());
        &self.query[HEADER_LEN..HEADER_LEN + question_len]
    }

    fn question_wire_len(&self) -> usize {
        self.question
            .name()
            .iter()
            .map(|l| l.len() + 1)
            .sum::<usize>()
            + 1
            + 4
    }

    /// The reply for the client from an upstream reply (already checked to
    /// answer this question): the client's ID, truncated to its limit.
    pub fn finish(&self, upstream_reply: &[u8]) -> Vec<u8> {
        reply::fit(
            upstream_reply,
            self.header.id,
            self.question_bytes(),
            self.edns.is_some(),
            self.reply_limit,
        )
        .unwrap_or_else(|| self.servfail())
    }

    /// SERVFAIL, when no upstream server answered.
    pub fn servfail(&self) -> Vec<u8> {
        let parsed = ParsedQuery {
            header: self.header,
            question: self.question.clone(),
            question_bytes: self.question_bytes(),
            edns: self.edns,
        };
        reply::local(
            &parsed,
            false,
            ResponseCode::ServFail,
            Answers::None,
            self.reply_limit,
        )
        .unwrap_or_else(|| reply::header_only(&self.header, ResponseCode::ServFail))
    }
}

/// What to do with `query`, a message that came over UDP.
pub fn handle_query(query: &[u8], zone: &Zone) -> Action {
    handle_query_over(query, zone, Transport::Udp)
}

/// What to do with `query`, a message that came over `transport`.
pub fn handle_query_over(query: &[u8], zone: &Zone, transport: Transport) -> Action {
    let formerr =
        |header: &Header| Action::Reject(reply::header_only(header, ResponseCode::FormErr));
    let parsed = match query::parse(query) {
        Ok(parsed) => parsed,
        Err(QueryError::NoHeader | QueryError::Response) => return Action::Drop,
        Err(QueryError::NotImplemented(header)) => {
            return Action::Reject(reply::header_only(&header, ResponseCode::NotImp));
        }
        Err(QueryError::Malformed { header, .. }) => return formerr(&header),
    };
    let limit = match transport {
        Transport::Udp => {
            // RFC 6891: without EDNS a UDP message stays within 512 bytes.
            let max = if parsed.edns.is_some() {
                MAX_UDP_QUERY
            } else {
                reply::PLAIN_UDP_LIMIT
            };
            if query.len() > max {
                return formerr(&parsed.header);
            }
            reply::udp_limit(parsed.edns)
        }
        Transport::Tcp => framing::MAX_MESSAGE,
    };
    let local = |authoritative, rcode, answers| match reply::local(
        &parsed,
        authoritative,
        rcode,
        answers,
        limit,
    ) {
        Some(bytes) => Action::Reply(bytes),
        None => Action::Drop,
    };
    if parsed.edns.is_some_and(|e| e.version > 0) {
        return local(false, ResponseCode::BADVERS, Answers::None);
    }
    let qtype = parsed.question.query_type();
    let data = matches!(parsed.question.query_class(), DNSClass::IN | DNSClass::ANY);
    let wants = |t: RecordType| data && (qtype == t || qtype == RecordType::ANY);
    let name = parsed.question.name();
    let forward = |servers: Option<Arc<[SocketAddr]>>| {
        Action::Forward(Forward {
            query: query.to_vec(),
            header: parsed.header,
            question: parsed.question.clone(),
            edns: parsed.edns,
            reply_limit: limit,
            servers,
        })
    };
    match zone.resolve(name) {
        Resolution::Host { addrs, ttl } if wants(RecordType::A) => {
            local(true, ResponseCode::NoError, Answers::A { addrs, ttl })
        }
        Resolution::Reverse { target, ttl } if wants(RecordType::PTR) => {
            local(true, ResponseCode::NoError, Answers::Ptr { target, ttl })
        }
        Resolution::Node(node) if data => {
            let mut rrs = Vec::new();
            let rcode = if qtype != RecordType::CNAME && qtype != RecordType::ANY {
                follow(zone, node, qtype, &mut rrs)
            } else {
                push_node(&mut rrs, node, Owner::Question, qtype);
                ResponseCode::NoError
            };
            local(true, rcode, Answers::Records(&rrs))
        }
        // A name the zone does not know, under a split domain deeper
        // than the network's: that domain's servers know it.
        Resolution::NxDomain | Resolution::Apex if zone.split_below_domain(name).is_some() => {
            forward(zone.split_below_domain(name).cloned())
        }
        // The name exists, just not with this type: no data, not forwarded.
        Resolution::Host { .. }
        | Resolution::Reverse { .. }
        | Resolution::Node(_)
        | Resolution::Apex => local(true, ResponseCode::NoError, Answers::None),
        Resolution::NxDomain => local(true, ResponseCode::NXDomain, Answers::None),
        Resolution::Elsewhere => match zone.route(name) {
            Route::Default => forward(None),
            Route::Servers(servers) => forward(Some(servers.clone())),
            Route::Refuse => local(false, ResponseCode::Refused, Answers::None),
        },
    }
}

/// The most CNAMEs followed for one answer (a loop stops there).
pub const MAX_CNAME_CHAIN: usize = 8;

/// The answer for `qtype` at `node`: its CNAME chain, followed through the
/// zone as authoritative servers do for their own names (so an alias of a
/// guest gives the guest's current address), then the records of the
/// last name. The rcode is that of the last name (RFC 6604): NXDOMAIN when
/// an alias points to a name of the domain no one holds now.
fn follow<'z>(
    zone: &'z Zone,
    node: Node<'z>,
    qtype: RecordType,
    rrs: &mut Vec<Rr<'z>>,
) -> ResponseCode {
    let mut node = node;
    let mut owner = Owner::Question;
    loop {
        let Some(cname) = node.cname() else {
            push_node(rrs, node, owner, qtype);
            return ResponseCode::NoError;
        };
        rrs.push(Rr {
            owner,
            rtype: RecordType::CNAME,
            ttl: STATIC_TTL,
            rdata: Rdata::Wire(&cname.rdata),
        });
        owner = Owner::LastCnameTarget;
        let Some(target) = &cname.target else {
            return ResponseCode::NoError;
        };
        if rrs.len() >= MAX_CNAME_CHAIN {
            return ResponseCode::NoError;
        }
        match zone.resolve(target) {
            Resolution::Node(next) => node = next,
            Resolution::Host { addrs, ttl } => {
                push_node(
                    rrs,
                    Node {
                        addrs,
                        addr_ttl: ttl,
                        records: &[],
                    },
                    owner,
                    qtype,
                );
                return ResponseCode::NoError;
            }
            Resolution::Reverse { target, ttl } => {
                if qtype == RecordType::PTR {
                    rrs.push(Rr {
                        owner,
                        rtype: RecordType::PTR,
                        ttl,
                        rdata: Rdata::Wire(target),
                    });
                }
                return ResponseCode::NoError;
            }
            Resolution::NxDomain => return ResponseCode::NXDomain,
            // Outside the zone: the client's resolver follows it.
            Resolution::Apex | Resolution::Elsewhere => return ResponseCode::NoError,
        }
    }
}

/// The records of `node` answering `qtype` (all of them for ANY).
fn push_node<'z>(rrs: &mut Vec<Rr<'z>>, node: Node<'z>, owner: Owner, qtype: RecordType) {
    let any = qtype == RecordType::ANY;
    if any || qtype == RecordType::A {
        rrs.extend(node.addrs.iter().map(|a| Rr {
            owner,
            rtype: RecordType::A,
            ttl: node.addr_ttl,
            rdata: Rdata::A(*a),
        }));
    }
    rrs.extend(
        node.records
            .iter()
            .filter(|t| any || t.rtype == qtype)
            .map(|t| Rr {
                owner,
                rtype: t.rtype,
                ttl: STATIC_TTL,
                rdata: Rdata::Wire(&t.rdata),
            }),
    );
}

/// What to do with each query of a TCP stream's bytes, in order, up to the
/// first one that ends the connection (a rejected or dropped message, a
/// zero length) or an incomplete frame. The fuzz target for TCP framing.
pub fn handle_tcp_stream(data: &[u8], zone: &Zone) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut rest = data;
    while let Frame::Message { message, consumed } = framing::next_frame(rest) {
        rest = &rest[consumed..];
        let action = handle_query_over(message, zone, Transport::Tcp);
        let last = matches!(action, Action::Drop | Action::Reject(_));
        actions.push(action);
        if last {
            break;
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::query::tests::query_bytes;

    use guestnet_mode_api::DnsRecord;
    use hickory_proto::op::Message;
    use hickory_proto::rr::RData;
    use std::net::Ipv4Addr;

    const A: u16 = 1;
    const PTR: u16 = 12;
    const MX: u16 = 15;
    const AAAA: u16 = 28;
    const ANY: u16 = 255;

    fn zone() -> Zone {
        super::super::zone::example()
    }

    fn reply(action: Action) -> Message {
        match action {
            Action::Reply(bytes) => Message::from_vec(&bytes).unwrap(),
            other => panic!("not a reply: {other:?}"),
        }
    }

    fn ask(name: &str, qtype: u16) -> Action {
        handle_query(&query_bytes(42, name, qtype, None), &zone())
    }

    #[test]
    fn a_for_zone_names_under_the_domain_and_bare() {
        for name in [
            "web.guest.lan",
            "WEB.GUEST.LAN",
            "web",
            "vm1.guest.lan",
            "vm1",
        ] {
            let m = reply(ask(name, A));
            assert_eq!(m.id, 42);
            assert_eq!(m.response_code, ResponseCode::NoError, "{name}");
            assert!(m.authoritative);
            assert_eq!(m.answers.len(), 1, "{name}");
            assert_eq!(
                m.answers[0].name.to_ascii().to_lowercase(),
                format!("{}.", name.to_lowercase())
            );
        }
        let m = reply(ask("vm1.guest.lan", ANY));
        let RData::A(a) = &m.answers[0].data else {
            panic!("not an A record");
        };
        assert_eq!(a.0, Ipv4Addr::new(192, 168, 122, 50));
    }

    #[test]
    fn ptr_for_known_addresses() {
        let m = reply(ask("50.122.168.192.in-addr.arpa", PTR));
        let RData::PTR(target) = &m.answers[0].data else {
            panic!("not a PTR record");
        };
        assert_eq!(target.0.to_ascii(), "vm1.guest.lan.");
        let m = reply(ask("5.122.168.192.in-addr.arpa", PTR));
        assert_eq!(m.answers.len(), 1);
        // A known reverse name, another type: no data.
        let m = reply(ask("5.122.168.192.in-addr.arpa", A));
        assert!(m.answers.is_empty() && m.response_code == ResponseCode::NoError);
        // An unknown address: not ours.
        assert!(matches!(
            ask("9.122.168.192.in-addr.arpa", PTR),
            Action::Forward(_)
        ));
    }

    #[test]
    fn unknown_names_in_the_domain_are_never_forwarded() {
        for name in ["nope.guest.lan", "a.b.guest.lan", "NoPe.Guest.Lan"] {
            for qtype in [A, AAAA, MX, PTR, ANY] {
                let m = reply(ask(name, qtype));
                assert_eq!(m.response_code, ResponseCode::NXDomain, "{name} {qtype}");
                assert!(m.authoritative && m.answers.is_empty());
            }
        }
        let m = reply(ask("guest.lan", A));
        assert_eq!(m.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
    }

    #[test]
    fn other_types_of_known_names_have_no_data() {
        for qtype in [AAAA, MX, 16] {
            let m = reply(ask("web.guest.lan", qtype));
            assert_eq!(m.response_code, ResponseCode::NoError);
            assert!(m.answers.is_empty() && m.authoritative);
        }
    }

    #[test]
    fn everything_else_is_forwarded_as_it_came() {
        let bytes = query_bytes(42, "example.com", AAAA, Some(1232));
        let Action::Forward(fwd) = handle_query(&bytes, &zone()) else {
            panic!("not forwarded");
        };
        assert_eq!(fwd.query, bytes);
        assert_eq!(fwd.reply_limit, 1232);
        assert_eq!(fwd.question_bytes(), &bytes[12..12 + 17]);
        let upstream = fwd.query_with_id(7);
        assert_eq!(&upstream[..2], &[0, 7]);
        assert_eq!(&upstream[2..], &bytes[2..]);
        assert!(matches!(ask("unknown", A), Action::Forward(_)));
        let m = Message::from_vec(&fwd.servfail()).unwrap();
        assert_eq!(m.response_code, ResponseCode::ServFail);
        assert_eq!(m.id, 42);
        assert!(m.edns.is_some() && m.queries.len() == 1);
    }

    #[test]
    fn without_a_domain_unknown_bare_names_are_forwarded() {
        let mut z = Zone::new(None, &[]);
        z.add_lease("vm1", Ipv4Addr::new(10, 0, 0, 5));
        let q = |name| handle_query(&query_bytes(1, name, A, None), &z);
        assert_eq!(reply(q("vm1")).answers.len(), 1);
        assert!(matches!(q("vm2"), Action::Forward(_)));
        assert!(matches!(q("vm1.example"), Action::Forward(_)));
    }

    #[test]
    fn malformed_messages_are_rejected_or_dropped() {
        let z = zone();
        assert_eq!(handle_query(&[], &z), Action::Drop);
        assert_eq!(handle_query(&[1; 11], &z), Action::Drop);
        let good = query_bytes(5, "web.guest.lan", A, None);
        let mut response = good.clone();
        response[2] |= 0x80;
        assert_eq!(handle_query(&response, &z), Action::Drop);
        let rcode = |action: Action| match action {
            Action::Reject(bytes) => Message::from_vec(&bytes).unwrap().response_code,
            other => panic!("not rejected: {other:?}"),
        };
        let mut trailing = good.clone();
        trailing.push(1);
        assert_eq!(rcode(handle_query(&trailing, &z)), ResponseCode::FormErr);
        assert_eq!(rcode(handle_query(&good[..20], &z)), ResponseCode::FormErr);
        assert_eq!(rcode(handle_query(&good[..12], &z)), ResponseCode::FormErr);
        let mut update = good.clone();
        update[2] = 5 << 3;
        assert_eq!(rcode(handle_query(&update, &z)), ResponseCode::NotImp);
    }

    #[test]
    fn oversized_udp_queries_are_refused() {
        let z = zone();
        // A 600-byte name stuffed into the additional section is still a
        // valid query over TCP, but too long for UDP without EDNS.
        let mut big = query_bytes(5, "example.com", A, None);
        big[11] = 1;
        big.extend_from_slice(&[0, 0, 1, 0, 1, 0, 0, 0, 0, 2, 0x58]);
        big.extend_from_slice(&[0; 600]);
        assert!(matches!(handle_query(&big, &z), Action::Reject(_)));
        assert!(matches!(
            handle_query_over(&big, &z, Transport::Tcp),
            Action::Forward(_)
        ));
        let huge = vec![0; MAX_UDP_QUERY + 1];
        assert!(matches!(handle_query(&huge, &z), Action::Reject(_)));
    }

    #[test]
    fn udp_replies_fit_the_client() {
        let many: Vec<DnsRecord> = (0..100)
            .map(|i| DnsRecord {
                name: "many".into(),
                ip: Ipv4Addr::new(10, 0, 0, i),
            })
            .collect();
        let z = Zone::new(None, &many);
        let m = reply(handle_query(&query_bytes(1, "many", A, None), &z));
        assert!(m.truncation && m.answers.is_empty());
        let m = reply(handle_query(&query_bytes(1, "many", A, Some(4096)), &z));
        assert!(!m.truncation && m.answers.len() == 100);
        let m = reply(handle_query_over(
            &query_bytes(1, "many", A, None),
            &z,
            Transport::Tcp,
        ));
        assert_eq!(m.answers.len(), 100);
    }

    #[test]
    fn edns_versions_above_zero_get_badvers() {
        let mut q = query_bytes(1, "web.guest.lan", A, Some(1232));
        let n = q.len();
        q[n - 5] = 1; // the version byte of the OPT TTL
        let m = reply(handle_query(&q, &zone()));
        // hickory reads 16 as BADSIG, its other name.
        assert_eq!(u16::from(m.response_code), 16);
    }

    #[test]
    fn tcp_streams_stop_at_garbage() {
        let z = zone();
        let mut stream = Vec::new();
        for name in ["web.guest.lan", "example.com"] {
            stream.extend(framing::frame(&query_bytes(1, name, A, None)).unwrap());
        }
        stream.extend(framing::frame(&[0; 20]).unwrap());
        stream.extend(framing::frame(&query_bytes(2, "web", A, None)).unwrap());
        let actions = handle_tcp_stream(&stream, &z);
        assert_eq!(actions.len(), 3);
        assert!(matches!(actions[0], Action::Reply(_)));
        assert!(matches!(actions[1], Action::Forward(_)));
        assert!(matches!(actions[2], Action::Reject(_)));
        assert!(handle_tcp_stream(&[0, 0, 0, 12], &z).is_empty());
        assert!(handle_tcp_stream(&stream[..10], &z).is_empty());
    }

    /// Cheap inputs of every shape must not panic: a poor man's fuzz run.
    #[test]
    fn no_input_panics() {
        let z = zone();
        let seed = query_bytes(3, "vm1.guest.lan", A, Some(1232));
        let mut state: u32 = 0x9e37_79b9;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        for _ in 0..20_000 {
            let mut m = seed.clone();
            for _ in 0..(next() % 4 + 1) {
                let i = next() as usize % m.len();
                m[i] = next() as u8;
            }
            m.truncate(next() as usize % (m.len() + 1));
            let _ = handle_query(&m, &z);
            let _ = handle_query_over(&m, &z, Transport::Tcp);
            let _ = handle_tcp_stream(&m, &z);
        }
    }

    const CNAME: u16 = 5;
    const TXT: u16 = 16;
    const SRV: u16 = 33;

    fn typed_zone(upstream: bool) -> Zone {
        Zone::from_plan(&super::super::zone::typed_plan(upstream))
    }

    fn ask_in(z: &Zone, name: &str, qtype: u16) -> Message {
        reply(handle_query(&query_bytes(7, name, qtype, Some(1232)), z))
    }

    fn rdata_text(m: &Message) -> Vec<String> {
        m.answers
            .iter()
            .map(|r| format!("{} {}", r.name.to_ascii().to_lowercase(), r.data))
            .collect()
    }

    #[test]
    fn cname_txt_srv_mx_and_a_records_of_the_definition() {
        let z = typed_zone(true);
        let m = ask_in(&z, "www.guest.lan", CNAME);
        assert!(m.authoritative && m.response_code == ResponseCode::NoError);
        assert_eq!(rdata_text(&m), ["www.guest.lan. web1.guest.lan."]);
        let m = ask_in(&z, "info.guest.lan", TXT);
        assert_eq!(rdata_text(&m), ["info.guest.lan. hello"]);
        let m = ask_in(&z, "_http._tcp.guest.lan", SRV);
        assert_eq!(
            rdata_text(&m),
            ["_http._tcp.guest.lan. 0 5 80 web1.guest.lan."]
        );
        let m = ask_in(&z, "mail", MX);
        assert_eq!(rdata_text(&m), ["mail. 10 web1.guest.lan."]);
        let m = ask_in(&z, "db.guest.lan", A);
        assert_eq!(rdata_text(&m), ["db.guest.lan. 10.77.0.9"]);
        for r in &m.answers {
            assert_eq!(r.ttl, super::super::zone::STATIC_TTL);
        }
        // Other types of these names: no data; their parents exist.
        for (name, qtype) in [
            ("info.guest.lan", A),
            ("mail.guest.lan", TXT),
            ("_tcp.guest.lan", SRV),
        ] {
            let m = ask_in(&z, name, qtype);
            assert_eq!(m.response_code, ResponseCode::NoError, "{name}");
            assert!(m.answers.is_empty(), "{name}");
        }
        // ANY gives every record of the name.
        let m = ask_in(&z, "mail.guest.lan", ANY);
        assert_eq!(m.answers.len(), 1);
    }

    #[test]
    fn an_alias_of_a_guest_follows_its_lease() {
        let mut z = typed_zone(true);
        // No guest named web1 yet: the alias, and NXDOMAIN for its target.
        let m = ask_in(&z, "www.guest.lan", A);
        assert_eq!(m.response_code, ResponseCode::NXDomain);
        assert_eq!(rdata_text(&m), ["www.guest.lan. web1.guest.lan."]);
        z.add_lease("web1", Ipv4Addr::new(10, 77, 0, 50));
        let m = ask_in(&z, "WWW.guest.lan", A);
        assert_eq!(m.response_code, ResponseCode::NoError);
        assert!(m.authoritative);
        assert_eq!(
            rdata_text(&m),
            [
                "www.guest.lan. web1.guest.lan.",
                "web1.guest.lan. 10.77.0.50"
            ]
        );
        assert_eq!(m.answers[1].ttl, super::super::zone::LEASE_TTL);
        // The guest comes back at another address: so does the alias.
        z.remove_lease("web1", Ipv4Addr::new(10, 77, 0, 50));
        z.add_lease("web1", Ipv4Addr::new(10, 77, 0, 51));
        let m = ask_in(&z, "www.guest.lan", A);
        assert_eq!(
            rdata_text(&m),
            [
                "www.guest.lan. web1.guest.lan.",
                "web1.guest.lan. 10.77.0.51"
            ]
        );
        // An alias of the alias: the whole chain, each name pointing at the
        // previous target.
        let m = ask_in(&z, "alias", A);
        assert_eq!(
            rdata_text(&m),
            [
                "alias. www.guest.lan.",
                "www.guest.lan. web1.guest.lan.",
                "web1.guest.lan. 10.77.0.51"
            ]
        );
        // Other types follow too; a name without the type gives the chain.
        let m = ask_in(&z, "www", TXT);
        assert_eq!(m.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 1);
        // Without EDNS, too (512 bytes).
        let m = reply(handle_query(
            &query_bytes(1, "alias.guest.lan", A, None),
            &z,
        ));
        assert_eq!(m.answers.len(), 3);
    }

    #[test]
    fn aliases_outside_and_in_a_loop_end() {
        let z = typed_zone(true);
        // An outside target: the alias only; the client's resolver goes on.
        let m = ask_in(&z, "ext.guest.lan", A);
        assert_eq!(m.response_code, ResponseCode::NoError);
        assert_eq!(rdata_text(&m), ["ext.guest.lan. www.example.com."]);
        // A loop stops after MAX_CNAME_CHAIN records.
        let m = ask_in(&z, "l1.guest.lan", A);
        assert_eq!(m.answers.len(), MAX_CNAME_CHAIN);
        for r in &m.answers {
            assert_eq!(r.record_type(), RecordType::CNAME);
        }
    }

    #[test]
    fn without_upstream_outside_names_are_refused() {
        let z = typed_zone(false);
        for (name, qtype) in [
            ("example.com", A),
            ("unknown", A),
            ("9.9.9.10.in-addr.arpa", PTR),
            ("", ANY),
        ] {
            let m = ask_in(&z, name, qtype);
            assert_eq!(m.response_code, ResponseCode::Refused, "{name}");
            assert!(m.answers.is_empty() && !m.authoritative);
            assert_eq!(m.id, 7);
        }
        // The zone's own names and the split domains still work.
        assert_eq!(ask_in(&z, "db.guest.lan", A).answers.len(), 1);
        assert_eq!(
            ask_in(&z, "nope.guest.lan", A).response_code,
            ResponseCode::NXDomain
        );
        assert!(matches!(
            handle_query(&query_bytes(1, "db.corp.example", A, None), &z),
            Action::Forward(Forward {
                servers: Some(_),
                ..
            })
        ));
        // With it, they are forwarded to the default upstream.
        let z = typed_zone(true);
        assert!(matches!(
            handle_query(&query_bytes(1, "example.com", A, None), &z),
            Action::Forward(Forward { servers: None, .. })
        ));
    }

    #[test]
    fn split_domains_take_their_names_longest_suffix_first() {
        let z = typed_zone(true);
        let servers = |name: &str| match handle_query(&query_bytes(1, name, A, None), &z) {
            Action::Forward(f) => f.servers.map(|s| s[0].ip().to_string()),
            other => panic!("{name}: not forwarded: {other:?}"),
        };
        assert_eq!(servers("db.corp.example").as_deref(), Some("10.0.0.53"));
        assert_eq!(servers("corp.example").as_deref(), Some("10.0.0.53"));
        assert_eq!(servers("a.eu.corp.example").as_deref(), Some("10.0.0.54"));
        assert_eq!(servers("Eu.Corp.Example").as_deref(), Some("10.0.0.54"));
        assert_eq!(servers("xcorp.example"), None);
        // A split domain under the network's: its names the zone lacks.
        let mut plan = super::super::zone::typed_plan(false);
        plan.domain_servers[0].domain = guestnet_mode_api::DnsName::new("sub.guest.lan").unwrap();
        let z = Zone::from_plan(&plan);
        assert!(matches!(
            handle_query(&query_bytes(1, "x.sub.guest.lan", A, None), &z),
            Action::Forward(Forward {
                servers: Some(_),
                ..
            })
        ));
        assert_eq!(
            reply(handle_query(&query_bytes(1, "x.guest.lan", A, None), &z)).response_code,
            ResponseCode::NXDomain
        );
    }

    #[test]
    fn mangled_queries_against_typed_records_never_panic() {
        // A cheap stand-in for the fuzz target, run with every test.
        let mut z = typed_zone(false);
        z.add_lease("web1", Ipv4Addr::new(10, 77, 0, 50));
        let seeds: Vec<Vec<u8>> = [
            ("www.guest.lan", A),
            ("alias", ANY),
            ("l1.guest.lan", TXT),
            ("_http._tcp.guest.lan", SRV),
            ("db.corp.example", A),
        ]
        .iter()
        .map(|(n, t)| query_bytes(1, n, *t, Some(512)))
        .collect();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for i in 0..20_000 {
            let mut q = seeds[i % seeds.len()].clone();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() as usize) % q.len();
                q[at] = next() as u8;
            }
            if next() % 8 == 0 {
                q.truncate((next() as usize) % q.len());
            }
            for transport in [Transport::Udp, Transport::Tcp] {
                if let Action::Reply(bytes) = handle_query_over(&q, &z, transport) {
                    assert!(Message::from_vec(&bytes).is_ok(), "{q:?}");
                }
            }
        }
    }
}
