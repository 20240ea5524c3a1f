//! Bounds on WaitForLease: how long one call may wait, and how many calls
//! may wait at once, per caller (its uid) and in all. Each wait holds a
//! task and a lease subscription, so without bounds one caller could hold
//! any number of them for 49 days (a `u` of milliseconds).
//!
//! WaitForLease needs no authorization, so the count is by uid, not by bus
//! name: a user who opens many connections still has [`PER_UID`] waits,
//! and [`TOTAL`] is far above it, so one user cannot fill it alone. The
//! waits of a connection also end when its name leaves the bus
//! ([`Waiters::name_gone`]), so a caller cannot keep its waits counted
//! after it has gone.

use crate::error::ServiceError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The longest wait one call may ask for, in milliseconds (10 minutes).
pub const MAX_TIMEOUT_MS: u32 = 600_000;
/// Waits one uid may have at once, over all its connections.
pub const PER_UID: usize = 16;
/// Waits all callers together may have at once.
pub const TOTAL: usize = 4096;

#[derive(Default)]
struct Counts {
    by_uid: HashMap<u32, usize>,
    /// Waits by unique bus name, with what tells them the name has gone.
    by_name: HashMap<String, (usize, watch::Sender<bool>)>,
    total: usize,
}

/// The waits in progress, by uid and by bus name. At most [`TOTAL`]
/// entries in each map: an entry goes when its last wait ends.
#[derive(Default)]
pub struct Waiters {
    // A std mutex, held only to count, never across an await.
    counts: Mutex<Counts>,
}

/// One wait in progress; counted until dropped.
pub struct Waiting {
    waiters: Arc<Waiters>,
    uid: u32,
    name: String,
    gone: watch::Receiver<bool>,
}

impl Waiters {
    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks `timeout_ms` and counts a wait for the connection `name` of
    /// `uid`, or says why not.
    pub fn begin(
        self: &Arc<Self>,
        name: &str,
        uid: u32,
        timeout_ms: u32,
    ) -> Result<Waiting, ServiceError> {
        if timeout_ms > MAX_TIMEOUT_MS {
            return Err(ServiceError::InvalidArgs(format!(
                "timeout_ms: {timeout_ms} is more than the longest wait, {MAX_TIMEOUT_MS} ms \
                 (10 minutes); wait again if you need longer"
            )));
        }
        let mut counts = self.counts();
        let mine = counts.by_uid.get(&uid).copied().unwrap_or(0);
        if mine >= PER_UID {
            return Err(ServiceError::LimitsExceeded(format!(
                "uid {uid} has {PER_UID} WaitForLease calls waiting already, the most one \
                 user may have over all its connections; wait for one to end"
            )));
        }
        if counts.total >= TOTAL {
            return Err(ServiceError::LimitsExceeded(format!(
                "{TOTAL} WaitForLease calls are waiting already, the most guestnetd keeps; \
                 try again when one ends"
            )));
        }
        *counts.by_uid.entry(uid).or_insert(0) += 1;
        counts.total += 1;
        let (n, tx) = counts
            .by_name
            .entry(name.to_owned())
            .or_insert_with(|| (0, watch::channel(false).0));
        *n += 1;
        let gone = tx.subscribe();
        Ok(Waiting {
            waiters: self.clone(),
            uid,
            name: name.to_owned(),
            gone,
        })
    }

    /// The unique bus name `name` has left the bus: its waits end.
    pub fn name_gone(&self, name: &str) {
        if let Some((_, tx)) = self.counts().by_name.get(name) {
            tx.send_replace(true);
        }
    }
}

impl Waiting {
    /// Returns when the caller's name has left the bus (never, if it stays).
    pub async fn caller_gone(&mut self) {
        if self.gone.wait_for(|gone| *gone).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut counts = self.waiters.counts();
        counts.total -= 1;
        if let Some(n) = counts.by_uid.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                counts.by_uid.remove(&self.uid);
            }
        }
        if let Some((n, _)) = counts.by_name.get_mut(&self.name) {
            *n -= 1;
            if *n == 0 {
                counts.by_name.remove(&self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_bounded_per_uid_and_in_all() {
        let w = Arc::new(Waiters::default());
        assert!(matches!(
            w.begin(":1.1", 1000, MAX_TIMEOUT_MS + 1),
            Err(ServiceError::InvalidArgs(_))
        ));
        // One uid over many connections: still PER_UID.
        let mine: Vec<_> = (0..PER_UID)
            .map(|i| w.begin(&format!(":1.{i}"), 1000, 1000).unwrap())
            .collect();
        assert!(matches!(
            w.begin(":1.99", 1000, 1000),
            Err(ServiceError::LimitsExceeded(_))
        ));
        // Another uid is not held up by it.
        let theirs = w.begin(":2.1", 1001, 1000).unwrap();
        drop((mine, theirs));
        let all: Vec<_> = (0..TOTAL)
            .map(|i| {
                let uid = (i / PER_UID) as u32;
                w.begin(&format!(":1.{i}"), uid, 1000).unwrap()
            })
            .collect();
        assert!(matches!(
            w.begin(":2.1", 999_999, 1000),
            Err(ServiceError::LimitsExceeded(_))
        ));
        drop(all);
        let c = w.counts();
        assert_eq!(
            (c.by_uid.len(), c.by_name.len(), c.total),
            (0, 0, 0),
            "every count is gone"
        );
    }

    #[tokio::test]
    async fn a_gone_name_ends_its_waits_only() {
        let w = Arc::new(Waiters::default());
        let mut a = w.begin(":1.1", 1000, 1000).unwrap();
        let mut b = w.begin(":1.2", 1000, 1000).unwrap();
        w.name_gone(":1.1");
        w.name_gone(":1.7"); // no waits: nothing to do
        tokio::time::timeout(std::time::Duration::from_secs(1), a.caller_gone())
            .await
            .expect("the wait of the gone name ends");
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), b.caller_gone())
                .await
                .is_err(),
            "the other name's wait goes on"
        );
    }
}
