//! Deciding what to do with a query: pure (bytes and a zone in, an
//! [`Action`] out, no I/O), total (every input gives an answer, never a
//! panic) and bounded (the work and memory follow the input's length), so
//! the fuzz targets can call it directly.

use super::framing::{self, Frame};
use super::query::{self, EdnsInfo, ParsedQuery, QueryError, HEADER_LEN};
use super::reply::{self, Answers};
use super::zone::{Resolution, Zone};
use hickory_proto::op::{Header, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};

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
    /// Not a name of the zone: ask the upstream servers.
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
    match zone.resolve(parsed.question.name()) {
        Resolution::Host { addrs, ttl } if wants(RecordType::A) => {
            local(true, ResponseCode::NoError, Answers::A { addrs, ttl })
        }
        Resolution::Reverse { target, ttl } if wants(RecordType::PTR) => {
            local(true, ResponseCode::NoError, Answers::Ptr { target, ttl })
        }
        // The name exists, just not with this type: no data, not forwarded.
        Resolution::Host { .. } | Resolution::Reverse { .. } | Resolution::Apex => {
            local(true, ResponseCode::NoError, Answers::None)
        }
        Resolution::NxDomain => local(true, ResponseCode::NXDomain, Answers::None),
        Resolution::Elsewhere => Action::Forward(Forward {
            query: query.to_vec(),
            header: parsed.header,
            question: parsed.question,
            edns: parsed.edns,
            reply_limit: limit,
        }),
    }
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
}
