//! Any bytes as a lease journal: replay stops at the first bad record,
//! never panics, and never claims more than it read.
#![no_main]

use guestnetd::dhcp::lease_store::parse_records;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (_, valid) = parse_records(data);
    assert!(valid <= data.len());
});
