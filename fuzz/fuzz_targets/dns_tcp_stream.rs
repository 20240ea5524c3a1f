//! Any byte stream as DNS over TCP (length-prefixed queries): never a panic.
#![no_main]

use guestnet_mode_api::DnsName;
use guestnetd::dns::answer::handle_tcp_stream;
use guestnetd::dns::Zone;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let zone = Zone::new(Some(DnsName::new("guest.lan").unwrap()), &[]);
    let _ = handle_tcp_stream(data, &zone);
});
