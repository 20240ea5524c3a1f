//! Bounds on WaitForLease: how long one call may wait, and how many calls
//! may wait at once, per caller (its unique bus name) and in all. Each wait
//! holds a task and a lease subscription, so without bounds one caller
//! could hold any number of them for 49 days (a `u` of milliseconds).

use crate::error::ServiceError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The longest wait one call may ask for, in milliseconds (10 minutes).
pub const MAX_TIMEOUT_MS: u32 = 600_000;
/// Waits one caller may have at once.
pub const PER_CALLER: usize = 16;
/// Waits all callers together may have at once.
pub const TOTAL: usize = 256;

/// The waits in progress, by caller. At most [`TOTAL`] entries: an entry
/// goes when its caller's last wait ends.
#[derive(Default)]
pub struct Waiters {
    // A std mutex, held only to count, never across an await.
    by_caller: Mutex<(HashMap<String, usize>, usize)>,
}

/// One wait in progress; counted until dropped.
pub struct Waiting {
    waiters: Arc<Waiters>,
    caller: String,
}

impl Waiters {
    /// Checks `timeout_ms` and counts a wait for `caller`, or says why not.
    pub fn begin(self: &Arc<Self>, caller: &str, timeout_ms: u32) -> Result<Waiting, ServiceError> {
        if timeout_ms > MAX_TIMEOUT_MS {
            return Err(ServiceError::InvalidArgs(format!(
                "timeout_ms: {timeout_ms} is more than the longest wait, {MAX_TIMEOUT_MS} ms \
                 (10 minutes); wait again if you need longer"
            )));
        }
        let mut guard = self.by_caller.lock().unwrap_or_else(|e| e.into_inner());
        let (by_caller, total) = &mut *guard;
        if *total >= TOTAL {
            return Err(ServiceError::LimitsExceeded(format!(
                "{TOTAL} WaitForLease calls are waiting already, the most guestnetd keeps; \
                 try again when one ends"
            )));
        }
        let mine = by_caller.entry(caller.to_owned()).or_insert(0);
        if *mine >= PER_CALLER {
            return Err(ServiceError::LimitsExceeded(format!(
                "{caller} has {PER_CALLER} WaitForLease calls waiting already, the most one \
                 caller may have; wait for one to end"
            )));
        }
        *mine += 1;
        *total += 1;
        Ok(Waiting {
            waiters: self.clone(),
            caller: caller.to_owned(),
        })
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut guard = self
            .waiters
            .by_caller
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (by_caller, total) = &mut *guard;
        *total -= 1;
        if let Some(n) = by_caller.get_mut(&self.caller) {
            *n -= 1;
            if *n == 0 {
                by_caller.remove(&self.caller);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_bounded_per_caller_and_in_all() {
        let w = Arc::new(Waiters::default());
        assert!(matches!(
            w.begin(":1.1", MAX_TIMEOUT_MS + 1),
            Err(ServiceError::InvalidArgs(_))
        ));
        let mine: Vec<_> = (0..PER_CALLER)
            .map(|_| w.begin(":1.1", 1000).unwrap())
            .collect();
        assert!(matches!(
            w.begin(":1.1", 1000),
            Err(ServiceError::LimitsExceeded(_))
        ));
        drop(mine);
        let all: Vec<_> = (0..TOTAL)
            .map(|i| w.begin(&format!(":1.{}", i % 100), 1000).unwrap())
            .collect();
        assert!(matches!(
            w.begin(":2.1", 1000),
            Err(ServiceError::LimitsExceeded(_))
        ));
        drop(all);
        let g = w.by_caller.lock().unwrap();
        assert_eq!((g.0.len(), g.1), (0, 0), "every count is gone");
    }
}
