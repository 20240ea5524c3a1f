//! Any bytes as a lease journal: replay skips bad records and goes on at
//! the next valid frame, never panics, and never claims more than it read.
#![no_main]

use guestnetd::dhcp::lease_store::{parse, parse_records};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = parse(data);
    assert!(parsed.end <= data.len());
    assert!(parsed.skipped <= parsed.end);
    let (records, valid) = parse_records(data);
    assert_eq!((records.len(), valid), (parsed.records.len(), parsed.end));
});
