//! What a long-running child (a monitor) prints on stdout, collected line by
//! line by a thread of its own as it comes, for tests that wait for a line.

use std::io::{BufRead, BufReader};
use std::process::ChildStdout;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

struct Seen<T> {
    items: Vec<T>,
    /// stdout reached its end (the child exited or closed it).
    closed: bool,
}

/// The lines so far, each as `parse` made it.
pub struct Lines<T> {
    seen: Arc<(Mutex<Seen<T>>, Condvar)>,
    reader: Option<JoinHandle<()>>,
}

impl<T: Send + 'static> Lines<T> {
    /// Reads `stdout` until its end on a thread, keeping what `parse` makes
    /// of each line (a line it makes None of is skipped).
    pub fn collect(
        stdout: ChildStdout,
        parse: impl Fn(String) -> Option<T> + Send + 'static,
    ) -> Lines<T> {
        let seen = Arc::new((
            Mutex::new(Seen {
                items: Vec::new(),
                closed: false,
            }),
            Condvar::new(),
        ));
        let seen2 = seen.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Some(item) = parse(line) else {
                    continue;
                };
                let (lock, cv) = &*seen2;
                lock.lock().unwrap().items.push(item);
                cv.notify_all();
            }
            let (lock, cv) = &*seen2;
            lock.lock().unwrap().closed = true;
            cv.notify_all();
        });
        Lines {
            seen,
            reader: Some(reader),
        }
    }

    /// `f` of the items so far and whether stdout ended, under the lock.
    pub fn with<R>(&self, f: impl FnOnce(&[T], bool) -> R) -> R {
        let guard = self.seen.0.lock().unwrap();
        f(&guard.items, guard.closed)
    }

    /// Waits up to `timeout` while there are no more than `n` items and
    /// stdout has not ended.
    pub fn wait_for_more_than(&self, n: usize, timeout: Duration) {
        let (lock, cv) = &*self.seen;
        let guard = lock.lock().unwrap();
        let _ = cv
            .wait_timeout_while(guard, timeout, |s| s.items.len() <= n && !s.closed)
            .unwrap();
    }

    /// Waits for the reading thread to end: call it once the child is gone.
    pub fn join(&mut self) {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl<T: Clone + Send + 'static> Lines<T> {
    /// The items so far.
    pub fn items(&self) -> Vec<T> {
        self.with(|items, _| items.to_vec())
    }
}
