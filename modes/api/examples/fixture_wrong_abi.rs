//! Test fixture, not an example to follow: a library that looks like a mode
//! built for the next ABI version. guestnet's tests load it to show that
//! guestnetd refuses it, naming the file and both versions.

use guestnet_mode_api::abi::{Buffer, ModeTable, ABI_VERSION, STATUS_BAD_REQUEST};

unsafe extern "C" fn call(_: *const u8, _: usize, response: *mut Buffer) -> i32 {
    // SAFETY: guestnetd passes a writable buffer; this one owns no memory.
    unsafe { response.write(Buffer::EMPTY) };
    STATUS_BAD_REQUEST
}

unsafe extern "C" fn free(_: Buffer) {}

static TABLE: ModeTable = ModeTable {
    abi_version: ABI_VERSION + 1,
    call,
    free,
};

/// The entry point, as a future guestnet-mode-api would export it.
#[no_mangle]
pub extern "C" fn guestnet_mode_entry() -> *const ModeTable {
    &TABLE
}
