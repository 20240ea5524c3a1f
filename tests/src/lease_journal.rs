//! Reading a network's lease journal (`STATE/leases/NAME.journal`) as it
//! is on disk: a run of framed records, each a u32 length, a u32 CRC-32
//! (IEEE) of the payload and the payload, a JSON record, all little-endian.
//! A torn or corrupt tail ends the valid prefix.
//!
//! This is a reader of the tests' own, not guestnetd's
//! (`guestnetd::dhcp::lease_store::parse_records`): the tests crate does not
//! link the service, and a check of what is on disk that went through the
//! service's own parser would agree with any mistake the two share.

use serde_json::Value;

/// CRC-32 (IEEE), as the lease journal frames its records.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Appends one framed journal record (`{"op":"grant",...}`) to `out`, for
/// tests that write a journal for guestnetd to read.
pub fn frame(record: &Value, out: &mut Vec<u8>) {
    let payload = serde_json::to_vec(record).expect("JSON");
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

/// The framed records of a lease journal's bytes (u32 length, u32 CRC-32,
/// JSON, all little-endian): the records of the valid prefix, and its
/// length (all of `bytes` when the journal is whole).
pub fn records(bytes: &[u8]) -> (Vec<Value>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= 8 {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap());
        if len > 4096 || bytes.len() - at - 8 < len {
            break;
        }
        let payload = &bytes[at + 8..at + 8 + len];
        if crc32(payload) != crc {
            break;
        }
        match serde_json::from_slice::<Value>(payload) {
            Ok(v) => out.push(v),
            Err(_) => break,
        }
        at += 8 + len;
    }
    (out, at)
}
