//! The C-ABI boundary between guestnetd and a mode library.
//!
//! A library exports one symbol, [`ENTRY_SYMBOL`], an `extern "C"` function
//! returning a pointer to a static [`ModeTable`]. The table starts with its
//! ABI version, so a loader can read the version of any library, even one
//! built against a later or earlier version of this crate, before it touches
//! anything else. Requests and responses cross as JSON bytes; no Rust type
//! with an unstable layout ever crosses.
//!
//! Mode authors do not use this module directly: [`crate::export_mode!`]
//! writes the glue.

use crate::{Definition, HostFacts, Mode, ModeError, ModeInfo, Plan, TableDescription};
use serde::{Deserialize, Serialize};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The major version of the boundary: it changes only when the table layout
/// or the JSON of a request or response changes incompatibly, and a
/// guestnetd refuses a library of another major version, naming both. The
/// crate's own semver major is this number.
pub const ABI_VERSION: u32 = 1;

/// The minor version of the API within [`ABI_VERSION`] (the crate is
/// `1.MINOR.x`): it grows with each addition to the vocabulary. 0 is the
/// first release, which did not report it.
pub const API_MINOR: u32 = 1;

/// What the vocabulary of this API can say beyond the first release, by
/// name, with the minor version that brought each. A library lists in
/// [`ModeInfo::requires`](crate::ModeInfo::requires) those it cannot do
/// without, and a guestnetd that lacks one refuses to load it, naming it.
pub const FEATURES: &[(&str, u32)] = &[
    ("firewall-rules", 1),
    ("route-metric", 1),
    ("bridge-sysctls", 1),
    ("dhcp-options", 1),
    ("dns-upstream", 1),
    ("dns-records", 1),
    ("warnings", 1),
    ("describe-table", 1),
];

/// The one symbol a mode library exports.
pub const ENTRY_SYMBOL: &str = "guestnet_mode_entry";

/// The signature of [`ENTRY_SYMBOL`].
pub type EntryFn = unsafe extern "C" fn() -> *const ModeTable;

/// Status returned by [`ModeTable::call`].
pub const STATUS_OK: i32 = 0;
/// The mode panicked; the buffer holds the panic message.
pub const STATUS_PANIC: i32 = 1;
/// The request could not be read; the buffer holds why.
pub const STATUS_BAD_REQUEST: i32 = 2;

/// What a mode library exports. `abi_version` must stay the first field.
#[repr(C)]
pub struct ModeTable {
    pub abi_version: u32,
    /// Handles one JSON [`Request`] of `len` bytes at `request` and fills
    /// `response` with bytes that only `free` may release.
    pub call: unsafe extern "C" fn(request: *const u8, len: usize, response: *mut Buffer) -> i32,
    /// Releases a buffer that `call` filled, with the library's allocator.
    pub free: unsafe extern "C" fn(buffer: Buffer),
}

/// Bytes owned by the library that made them.
#[repr(C)]
pub struct Buffer {
    pub ptr: *mut u8,
    pub len: usize,
    pub cap: usize,
}

impl Buffer {
    pub const EMPTY: Buffer = Buffer {
        ptr: std::ptr::null_mut(),
        len: 0,
        cap: 0,
    };

    fn from_vec(v: Vec<u8>) -> Buffer {
        let mut v = std::mem::ManuallyDrop::new(v);
        Buffer {
            ptr: v.as_mut_ptr(),
            len: v.len(),
            cap: v.capacity(),
        }
    }
}

/// A request from the service.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Describe,
    /// Since API 1.1: the mode's definition table, for frontends. A library
    /// of API 1.0 cannot read this request; the service then describes its
    /// table as unknown.
    DescribeTable,
    Validate {
        definition: Box<Definition>,
    },
    Plan {
        definition: Box<Definition>,
        facts: Box<HostFacts>,
    },
}

/// A mode's answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Described(ModeInfo),
    Table(TableDescription),
    Validated,
    Planned(Box<Plan>),
    Refused(ModeError),
}

/// Handles one call on the library side; used by [`crate::export_mode!`].
///
/// # Safety
/// `request` must point to `len` readable bytes and `response` to a writable
/// [`Buffer`].
pub unsafe fn dispatch<M: Mode>(
    mode: &M,
    request: *const u8,
    len: usize,
    response: *mut Buffer,
) -> i32 {
    // SAFETY: the caller promises `len` readable bytes at `request`.
    let bytes = unsafe { std::slice::from_raw_parts(request, len) };
    let outcome = catch_unwind(AssertUnwindSafe(|| answer(mode, bytes)));
    let (status, body) = match outcome {
        Ok(Ok(resp)) => (
            STATUS_OK,
            serde_json::to_vec(&resp).unwrap_or_else(|e| e.to_string().into_bytes()),
        ),
        Ok(Err(why)) => (STATUS_BAD_REQUEST, why.into_bytes()),
        Err(payload) => (STATUS_PANIC, panic_message(&*payload).into_bytes()),
    };
    // SAFETY: the caller promises `response` is writable.
    unsafe { response.write(Buffer::from_vec(body)) };
    status
}

fn answer<M: Mode>(mode: &M, bytes: &[u8]) -> Result<Response, String> {
    let request: Request =
        serde_json::from_slice(bytes).map_err(|e| format!("unreadable request: {e}"))?;
    Ok(match request {
        Request::Describe => Response::Described(ModeInfo {
            name: mode.name().to_owned(),
            version: mode.version().to_owned(),
            api_minor: API_MINOR,
            requires: mode.requires().iter().map(|f| (*f).to_owned()).collect(),
        }),
        Request::DescribeTable => Response::Table(mode.table()),
        Request::Validate { definition } => match mode.validate(&definition) {
            Ok(()) => Response::Validated,
            Err(e) => Response::Refused(e),
        },
        Request::Plan { definition, facts } => match mode.plan(&definition, &facts) {
            Ok(plan) => Response::Planned(Box::new(plan)),
            Err(e) => Response::Refused(e),
        },
    })
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Releases a buffer made by [`dispatch`]; exported through the table.
///
/// # Safety
/// `buffer` must come from `dispatch` in this same library, released once.
pub unsafe extern "C" fn free_buffer(buffer: Buffer) {
    if !buffer.ptr.is_null() {
        // SAFETY: ptr, len and cap come from a Vec<u8> leaked in from_vec.
        drop(unsafe { Vec::from_raw_parts(buffer.ptr, buffer.len, buffer.cap) });
    }
}

/// Publishes a type that implements [`Mode`](crate::Mode) as this library's
/// mode. Use it once, at the crate root of a `cdylib`:
///
/// ```ignore
/// guestnet_mode_api::export_mode!(MyMode, MyMode::new());
/// ```
#[macro_export]
macro_rules! export_mode {
    ($ty:ty, $make:expr) => {
        fn __guestnet_mode_instance() -> &'static $ty {
            static INSTANCE: ::std::sync::OnceLock<$ty> = ::std::sync::OnceLock::new();
            INSTANCE.get_or_init(|| $make)
        }

        unsafe extern "C" fn __guestnet_mode_call(
            request: *const u8,
            len: usize,
            response: *mut $crate::abi::Buffer,
        ) -> i32 {
            // A panic while building the instance is contained too.
            let mode = match ::std::panic::catch_unwind(__guestnet_mode_instance) {
                Ok(mode) => mode,
                Err(_) => {
                    let msg = b"the mode panicked while starting".to_vec();
                    let mut msg = ::std::mem::ManuallyDrop::new(msg);
                    // SAFETY: guestnetd passes a writable buffer.
                    unsafe {
                        response.write($crate::abi::Buffer {
                            ptr: msg.as_mut_ptr(),
                            len: msg.len(),
                            cap: msg.capacity(),
                        })
                    };
                    return $crate::abi::STATUS_PANIC;
                }
            };
            // SAFETY: guestnetd passes `len` readable bytes and a writable buffer.
            unsafe { $crate::abi::dispatch(mode, request, len, response) }
        }

        static __GUESTNET_MODE_TABLE: $crate::abi::ModeTable = $crate::abi::ModeTable {
            abi_version: $crate::abi::ABI_VERSION,
            call: __guestnet_mode_call,
            free: $crate::abi::free_buffer,
        };

        /// The entry point guestnetd looks up.
        #[no_mangle]
        pub extern "C" fn guestnet_mode_entry() -> *const $crate::abi::ModeTable {
            &__GUESTNET_MODE_TABLE
        }
    };
}
