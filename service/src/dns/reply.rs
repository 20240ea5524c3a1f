//! Building the server's own replies in wire form: local answers, errors,
//! and fitting a reply into what the client can take.
//!
//! Answers are written straight into one buffer: the question is repeated
//! as received and every answer record names it through a compression
//! pointer, so no name is re-encoded on the hot path.

use super::query::{EdnsInfo, ParsedQuery, HEADER_LEN};
use hickory_proto::op::{Header, HeaderCounts, Metadata, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use std::net::Ipv4Addr;

/// The UDP payload this server advertises and the most it sends over UDP.
pub const EDNS_PAYLOAD: u16 = 4096;
/// The UDP reply limit of a client without EDNS (RFC 1035 4.2.1).
pub const PLAIN_UDP_LIMIT: usize = 512;

/// A compression pointer to the question name, right after the header.
const QUESTION_NAME_POINTER: [u8; 2] = [0xc0, HEADER_LEN as u8];
/// An OPT record: root name, type, payload, extended rcode/version/flags, no data.
const OPT_LEN: usize = 11;
/// Owner pointer, type, class, TTL and data length of an answer record.
const RECORD_FIXED_LEN: usize = 12;
const CLASS_IN: u16 = 1;

/// The answer records of a local reply.
#[derive(Debug, Clone, Copy)]
pub enum Answers<'z> {
    None,
    A {
        addrs: &'z [Ipv4Addr],
        ttl: u32,
    },
    Ptr {
        target: &'z [u8],
        ttl: u32,
    },
    /// Records of any type, in order; a CNAME chain first.
    Records(&'z [Rr<'z>]),
}

/// One answer record of [`Answers::Records`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rr<'z> {
    pub owner: Owner,
    pub rtype: RecordType,
    pub ttl: u32,
    pub rdata: Rdata<'z>,
}

/// Whose record it is, written as a compression pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The question's name (as the client spelled it).
    Question,
    /// The target of the last CNAME written before it (its data, written
    /// uncompressed, is pointed at).
    LastCnameTarget,
}

/// A record's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rdata<'z> {
    A(Ipv4Addr),
    /// Already in wire form, without compression pointers.
    Wire(&'z [u8]),
}

impl Rdata<'_> {
    fn len(&self) -> usize {
        match self {
            Rdata::A(_) => 4,
            Rdata::Wire(w) => w.len(),
        }
    }
}

impl Answers<'_> {
    fn count(&self) -> usize {
        match self {
            Answers::None => 0,
            Answers::A { addrs, .. } => addrs.len(),
            Answers::Ptr { .. } => 1,
            Answers::Records(rrs) => rrs.len(),
        }
    }

    fn wire_len(&self) -> usize {
        match self {
            Answers::None => 0,
            Answers::A { addrs, .. } => addrs.len() * (RECORD_FIXED_LEN + 4),
            Answers::Ptr { target, .. } => RECORD_FIXED_LEN + target.len(),
            Answers::Records(rrs) => rrs.iter().map(|r| RECORD_FIXED_LEN + r.rdata.len()).sum(),
        }
    }
}

/// The most a reply to a UDP client may hold: 512 bytes without EDNS, else
/// its advertised payload within [512, EDNS_PAYLOAD].
pub fn udp_limit(edns: Option<EdnsInfo>) -> usize {
    edns.map_or(PLAIN_UDP_LIMIT, |e| {
        usize::from(e.payload).clamp(PLAIN_UDP_LIMIT, usize::from(EDNS_PAYLOAD))
    })
}

/// A reply from this server: the question repeated, `answers`, and an OPT
/// record when the query had one. When it would exceed `limit` the answers
/// are left out and TC set, so the client asks again over TCP.
pub fn local(
    query: &ParsedQuery<'_>,
    authoritative: bool,
    rcode: ResponseCode,
    answers: Answers<'_>,
    limit: usize,
) -> Option<Vec<u8>> {
    let opt_len = if query.edns.is_some() { OPT_LEN } else { 0 };
    let bare_len = HEADER_LEN + query.question_bytes.len() + opt_len;
    let truncated = bare_len + answers.wire_len() > limit;
    let answers = if truncated { Answers::None } else { answers };

    let mut metadata = Metadata::response_from_request(&query.header.metadata);
    metadata.authoritative = authoritative;
    metadata.recursion_available = true;
    metadata.truncation = truncated;
    metadata.response_code = rcode;
    let counts = HeaderCounts {
        queries: 1,
        answers: u16::try_from(answers.count()).ok()?,
        authorities: 0,
        additionals: u16::from(query.edns.is_some()),
    };

    let mut buf = Vec::with_capacity(bare_len + answers.wire_len());
    let mut enc = BinEncoder::new(&mut buf);
    Header { metadata, counts }.emit(&mut enc).ok()?;
    enc.emit_vec(query.question_bytes).ok()?;
    match answers {
        Answers::None => {}
        Answers::A { addrs, ttl } => {
            for addr in addrs {
                emit_record_head(&mut enc, RecordType::A, ttl, 4)?;
                enc.emit_vec(&addr.octets()).ok()?;
            }
        }
        Answers::Ptr { target, ttl } => {
            emit_record_head(&mut enc, RecordType::PTR, ttl, target.len())?;
            enc.emit_vec(target).ok()?;
        }
        Answers::Records(rrs) => {
            // Where the last CNAME's target was written: a pointer to it
            // names the records of that target.
            let mut last_target: Option<u16> = None;
            for rr in rrs {
                let owner = match rr.owner {
                    Owner::Question => QUESTION_NAME_POINTER,
                    Owner::LastCnameTarget => {
                        let at = last_target?;
                        (0xc000 | at).to_be_bytes()
                    }
                };
                emit_head_owned(&mut enc, owner, rr.rtype, rr.ttl, rr.rdata.len())?;
                if rr.rtype == RecordType::CNAME {
                    // A pointer holds 14 bits of offset.
                    last_target = u16::try_from(enc.offset()).ok().filter(|o| *o < 0x4000);
                }
                match rr.rdata {
                    Rdata::A(addr) => enc.emit_vec(&addr.octets()).ok()?,
                    Rdata::Wire(w) => enc.emit_vec(w).ok()?,
                }
            }
        }
    }
    if query.edns.is_some() {
        enc.emit_vec(&opt_record(rcode)).ok()?;
    }
    drop(enc);
    Some(buf)
}

/// An error reply carrying only a header (for queries whose question could
/// not be read, or whose opcode is not implemented).
pub fn header_only(query: &Header, rcode: ResponseCode) -> Vec<u8> {
    let mut metadata = Metadata::response_from_request(&query.metadata);
    metadata.recursion_available = true;
    metadata.response_code = rcode;
    let mut header = [0u8; HEADER_LEN];
    header[..2].copy_from_slice(&metadata.id.to_be_bytes());
    header[2] = 0x80 | (u8::from(metadata.op_code) << 3) | u8::from(metadata.recursion_desired);
    header[3] = 0x80 | (u8::from(metadata.checking_disabled) << 4) | rcode.low();
    header.to_vec()
}

/// `reply` (a complete DNS message) made to fit `limit`: when longer, only
/// its header (TC set, flags and low rcode kept) and `question_bytes` are
/// kept, with an OPT record when the client used EDNS.
pub fn fit(
    reply: &[u8],
    id: u16,
    question_bytes: &[u8],
    edns: bool,
    limit: usize,
) -> Option<Vec<u8>> {
    if reply.len() < HEADER_LEN {
        return None;
    }
    if reply.len() <= limit {
        let mut out = reply.to_vec();
        out[..2].copy_from_slice(&id.to_be_bytes());
        return Some(out);
    }
    let mut out = Vec::with_capacity(HEADER_LEN + question_bytes.len() + OPT_LEN);
    out.extend_from_slice(&id.to_be_bytes());
    out.push(reply[2] | 0x02);
    out.push(reply[3]);
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(edns)]);
    out.extend_from_slice(question_bytes);
    if edns {
        out.extend_from_slice(&opt_record(ResponseCode::NoError));
    }
    Some(out)
}

fn emit_record_head(
    enc: &mut BinEncoder<'_>,
    rtype: RecordType,
    ttl: u32,
    data_len: usize,
) -> Option<()> {
    emit_head_owned(enc, QUESTION_NAME_POINTER, rtype, ttl, data_len)
}

fn emit_head_owned(
    enc: &mut BinEncoder<'_>,
    owner: [u8; 2],
    rtype: RecordType,
    ttl: u32,
    data_len: usize,
) -> Option<()> {
    enc.emit_vec(&owner).ok()?;
    enc.emit_u16(rtype.into()).ok()?;
    enc.emit_u16(CLASS_IN).ok()?;
    enc.emit_u32(ttl).ok()?;
    enc.emit_u16(u16::try_from(data_len).ok()?).ok()
}

/// Our OPT record: version 0, no flags (no DNSSEC here), the high bits of
/// the rcode (BADVERS needs them).
fn opt_record(rcode: ResponseCode) -> [u8; OPT_LEN] {
    let [t1, t2] = u16::from(RecordType::OPT).to_be_bytes();
    let [p1, p2] = EDNS_PAYLOAD.to_be_bytes();
    [0, t1, t2, p1, p2, rcode.high(), 0, 0, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::query::{parse, tests::query_bytes};
    use hickory_proto::op::Message;

    #[test]
    fn an_answer_decodes_and_points_at_the_question() {
        let bytes = query_bytes(9, "web.guest.lan", 1, Some(1232));
        let q = parse(&bytes).unwrap();
        let addrs = [Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)];
        let out = local(
            &q,
            true,
            ResponseCode::NoError,
            Answers::A {
                addrs: &addrs,
                ttl: 5,
            },
            512,
        )
        .unwrap();
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.id, 9);
        assert!(m.authoritative && m.recursion_available && m.recursion_desired);
        assert_eq!(m.answers.len(), 2);
        assert_eq!(m.answers[0].name, *q.question.name());
        assert_eq!(m.answers[1].ttl, 5);
        assert_eq!(m.edns.as_ref().unwrap().max_payload(), EDNS_PAYLOAD);
    }

    #[test]
    fn too_big_for_the_client_means_tc_and_no_answers() {
        let bytes = query_bytes(9, "web.guest.lan", 1, None);
        let q = parse(&bytes).unwrap();
        let addrs = vec![Ipv4Addr::new(10, 0, 0, 1); 40];
        let a = Answers::A {
            addrs: &addrs,
            ttl: 5,
        };
        let out = local(&q, true, ResponseCode::NoError, a, 512).unwrap();
        let m = Message::from_vec(&out).unwrap();
        assert!(m.truncation);
        assert!(m.answers.is_empty());
        assert!(out.len() <= 512);
        let out = local(&q, true, ResponseCode::NoError, a, 65535).unwrap();
        assert_eq!(Message::from_vec(&out).unwrap().answers.len(), 40);
    }

    #[test]
    fn badvers_sets_the_extended_rcode() {
        let bytes = query_bytes(9, "x", 1, Some(1232));
        let q = parse(&bytes).unwrap();
        let out = local(&q, false, ResponseCode::BADVERS, Answers::None, 512).unwrap();
        let m = Message::from_vec(&out).unwrap();
        // hickory reads 16 as BADSIG, its other name.
        assert_eq!(u16::from(m.response_code), 16);
    }

    #[test]
    fn header_only_errors() {
        let bytes = query_bytes(0xbeef, "x", 1, None);
        let q = parse(&bytes).unwrap();
        let out = header_only(&q.header, ResponseCode::FormErr);
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.id, 0xbeef);
        assert_eq!(m.response_code, ResponseCode::FormErr);
        assert!(m.queries.is_empty() && m.recursion_desired);
    }

    #[test]
    fn fitting_a_forwarded_reply() {
        let bytes = query_bytes(1, "big.example", 16, None);
        let q = parse(&bytes).unwrap();
        let mut reply = bytes.clone();
        reply[2] |= 0x80;
        reply.resize(700, 0);
        let out = fit(&reply, 0x1234, q.question_bytes, false, 512).unwrap();
        assert_eq!(&out[..2], &[0x12, 0x34]);
        assert_eq!(out[2] & 0x02, 0x02);
        assert_eq!(out.len(), 12 + q.question_bytes.len());
        let m = Message::from_vec(&out).unwrap();
        assert!(m.truncation && m.answers.is_empty());
        let out = fit(&reply, 0x1234, q.question_bytes, true, 4096).unwrap();
        assert_eq!(out.len(), 700);
        assert_eq!(&out[..2], &[0x12, 0x34]);
        let out = fit(&reply, 7, q.question_bytes, true, 600).unwrap();
        assert!(Message::from_vec(&out).unwrap().edns.is_some());
    }
}
