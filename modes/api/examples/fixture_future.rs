//! Test fixture, not an example to follow: a library as a mode built
//! against a later minor version of the API (1.9) would answer, written as
//! raw JSON because this crate's types cannot say what 1.9 adds. It
//! requires nothing at load, and plans a firewall rule this guestnetd does
//! not know (`teleport`): guestnetd must refuse that plan naming the rule,
//! never apply the rest of it without the rule.

use guestnet_mode_api::abi::{Buffer, ModeTable, ABI_VERSION, STATUS_BAD_REQUEST, STATUS_OK};

const DESCRIBED: &str = r#"{"described":{"name":"future","version":"1.9.0","api_minor":9}}"#;
const PLANNED: &str = r#"{"planned":{"bridge":{"kind":"create","name":"gnbrf","mtu":null},
  "addresses":["10.81.0.1/24"],"routes":[],"sysctls":[],
  "firewall":{"kind":"rules","rules":[{"rule":"teleport","to":"mars"}]},
  "dhcp":null,"dns":null}}"#;

unsafe extern "C" fn call(request: *const u8, len: usize, response: *mut Buffer) -> i32 {
    // SAFETY: guestnetd passes `len` readable bytes.
    let request = unsafe { std::slice::from_raw_parts(request, len) };
    let request = String::from_utf8_lossy(request);
    let (status, body) = if request.contains(r#""op":"describe""#) {
        (STATUS_OK, DESCRIBED)
    } else if request.contains(r#""op":"validate""#) {
        (STATUS_OK, r#""validated""#)
    } else if request.contains(r#""op":"plan""#) {
        (STATUS_OK, PLANNED)
    } else {
        (STATUS_BAD_REQUEST, "unknown request")
    };
    let mut body = std::mem::ManuallyDrop::new(body.as_bytes().to_vec());
    // SAFETY: guestnetd passes a writable buffer, released by `free`.
    unsafe {
        response.write(Buffer {
            ptr: body.as_mut_ptr(),
            len: body.len(),
            cap: body.capacity(),
        })
    };
    status
}

static TABLE: ModeTable = ModeTable {
    abi_version: ABI_VERSION,
    call,
    free: guestnet_mode_api::abi::free_buffer,
};

/// The entry point.
#[no_mangle]
pub extern "C" fn guestnet_mode_entry() -> *const ModeTable {
    &TABLE
}
