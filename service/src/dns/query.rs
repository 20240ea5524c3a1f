//! Reading a client's query. Strict, because whatever passes is either
//! answered from the zone or sent upstream exactly as it came: a message
//! that is not one plain question, cleanly encoded, goes no further.
//!
//! Only the header and the question are decoded into hickory types; the
//! additional section is walked without decoding record data, which keeps
//! the per-query cost to the name (held inline by hickory for short names).

use hickory_proto::op::{Header, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, DecodeError};

/// Size of the fixed DNS header.
pub const HEADER_LEN: usize = 12;

/// What a query's OPT record (EDNS, RFC 6891) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdnsInfo {
    /// The largest UDP reply the client takes.
    pub payload: u16,
    pub version: u8,
}

/// A query that may be answered or forwarded.
#[derive(Debug, Clone)]
pub struct ParsedQuery<'a> {
    pub header: Header,
    pub question: Query,
    /// The question section as received: answers repeat it byte for byte,
    /// keeping the client's spelling of the name (which resolvers using
    /// 0x20 case randomization check).
    pub question_bytes: &'a [u8],
    pub edns: Option<EdnsInfo>,
}

/// Why a message is not a query we take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("shorter than a DNS header")]
    NoHeader,
    #[error("a response, not a query")]
    Response,
    #[error("opcode {:?} is not implemented", .0.op_code)]
    NotImplemented(Header),
    #[error("malformed query: {reason}")]
    Malformed {
        header: Header,
        reason: &'static str,
    },
}

/// Parses `bytes` as a standard query: QR clear, opcode QUERY, exactly one
/// question with an uncompressed name, no answer or authority records, at
/// most one well-formed OPT record and nothing after the last record.
pub fn parse(bytes: &[u8]) -> Result<ParsedQuery<'_>, QueryError> {
    let mut dec = BinDecoder::new(bytes);
    let header = Header::read(&mut dec).map_err(|_| QueryError::NoHeader)?;
    if header.message_type == MessageType::Response {
        return Err(QueryError::Response);
    }
    if header.op_code != OpCode::Query {
        return Err(QueryError::NotImplemented(header));
    }
    let bad = |reason| QueryError::Malformed { header, reason };
    if header.counts.queries != 1 {
        return Err(bad("not exactly one question"));
    }
    if header.counts.answers != 0 || header.counts.authorities != 0 {
        return Err(bad("records in the answer or authority section"));
    }
    let question = Query::read(&mut dec).map_err(|_| bad("unreadable question"))?;
    let question_end = dec.index();
    // A compression pointer in the question could only point into the
    // header; refusing it lets answers copy the question as it is.
    let name_wire: usize = question.name().iter().map(|l| l.len() + 1).sum::<usize>() + 1;
    if HEADER_LEN + name_wire + 4 != question_end {
        return Err(bad("compressed question name"));
    }
    let mut edns = None;
    for _ in 0..header.counts.additionals {
        let record = read_record(&mut dec).map_err(|_| bad("unreadable additional record"))?;
        if record.rtype != RecordType::OPT {
            continue;
        }
        if edns.is_some() {
            return Err(bad("more than one OPT record"));
        }
        if !record.owner_is_root || !options_well_formed(record.rdata) {
            return Err(bad("malformed OPT record"));
        }
        edns = Some(EdnsInfo {
            payload: record.class,
            version: (record.ttl >> 16) as u8,
        });
    }
    if !dec.is_empty() {
        return Err(bad("trailing bytes after the last record"));
    }
    Ok(ParsedQuery {
        header,
        question,
        question_bytes: &bytes[HEADER_LEN..question_end],
        edns,
    })
}

struct RawRecord<'a> {
    owner_is_root: bool,
    rtype: RecordType,
    class: u16,
    ttl: u32,
    rdata: &'a [u8],
}

fn read_record<'a>(dec: &mut BinDecoder<'a>) -> Result<RawRecord<'a>, DecodeError> {
    let owner = Name::read(dec)?;
    let rtype = RecordType::from(dec.read_u16()?.unverified(/* any type is fine */));
    let class = dec.read_u16()?.unverified(/* any class is fine */);
    let ttl = dec.read_u32()?.unverified(/* any TTL is fine */);
    let len = dec.read_u16()?.unverified(/* checked by read_slice */);
    let rdata = dec
        .read_slice(usize::from(len))?
        .unverified(/* opaque here */);
    Ok(RawRecord {
        owner_is_root: owner.is_root(),
        rtype,
        class,
        ttl,
        rdata,
    })
}

/// OPT data is a sequence of (code, length, value); each must fit.
fn options_well_formed(mut data: &[u8]) -> bool {
    while !data.is_empty() {
        let [_, _, hi, lo, rest @ ..] = data else {
            return false;
        };
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        if rest.len() < len {
            return false;
        }
        data = &rest[len..];
    }
    true
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A query in wire form, built by hand so that tests control every byte.
    pub(crate) fn query_bytes(id: u16, name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
        let mut q = Vec::new();
        q.extend_from_slice(&id.to_be_bytes());
        q.extend_from_slice(&[0x01, 0x00]); // RD
        q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
        for label in name.split('.').filter(|l| !l.is_empty()) {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        if let Some(payload) = edns {
            q.extend_from_slice(&[0, 0, 41]);
            q.extend_from_slice(&payload.to_be_bytes());
            q.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        }
        q
    }

    #[test]
    fn a_plain_query() {
        let bytes = query_bytes(7, "Web.guest.lan", 1, None);
        let q = parse(&bytes).unwrap();
        assert_eq!(q.header.id, 7);
        assert!(q.header.recursion_desired);
        assert_eq!(q.question.query_type(), RecordType::A);
        assert_eq!(q.question_bytes, &bytes[12..]);
        assert_eq!(q.edns, None);
    }

    #[test]
    fn edns_is_read() {
        let bytes = query_bytes(7, "example.com", 28, Some(1232));
        let q = parse(&bytes).unwrap();
        assert_eq!(
            q.edns,
            Some(EdnsInfo {
                payload: 1232,
                version: 0
            })
        );
        assert_eq!(q.question_bytes.len(), 13 + 4);
    }

    #[test]
    fn what_is_refused() {
        assert_eq!(parse(&[0; 11]).unwrap_err(), QueryError::NoHeader);
        let good = query_bytes(1, "a.b", 1, Some(512));

        let mut response = good.clone();
        response[2] |= 0x80;
        assert_eq!(parse(&response).unwrap_err(), QueryError::Response);

        let mut notify = good.clone();
        notify[2] = 4 << 3;
        assert!(matches!(parse(&notify), Err(QueryError::NotImplemented(_))));

        let malformed = |bytes: &[u8]| matches!(parse(bytes), Err(QueryError::Malformed { .. }));
        let mut two = good.clone();
        two[5] = 2;
        assert!(malformed(&two));
        let mut none = good.clone();
        none[5] = 0;
        assert!(malformed(&none));
        let mut answers = good.clone();
        answers[7] = 1;
        assert!(malformed(&answers));
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(malformed(&trailing));
        assert!(malformed(&good[..good.len() - 1]));
        let mut two_opt = good.clone();
        two_opt[11] = 2;
        two_opt.extend_from_slice(&good[good.len() - 11..]);
        assert!(malformed(&two_opt));
        let mut bad_option = good.clone();
        let n = bad_option.len();
        bad_option[n - 1] = 3; // rdlength 3: half an option
        bad_option.extend_from_slice(&[0, 10, 0]);
        assert!(malformed(&bad_option));
        // A label length with the reserved bits.
        let mut bad_label = good.clone();
        bad_label[12] = 0x41;
        assert!(malformed(&bad_label));
    }

    #[test]
    fn a_compressed_question_name_is_refused() {
        let mut q = query_bytes(1, "", 1, None);
        // Question name: a pointer to offset 0 (inside the header).
        q.truncate(12);
        q.extend_from_slice(&[0xc0, 0x00, 0, 1, 0, 1]);
        assert!(parse(&q).is_err());
    }
}
