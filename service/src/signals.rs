//! A queue of events for the one task that turns them into D-Bus signals.
//!
//! Bounded, as every table a packet can grow must be, but allocated as it
//! fills: a tokio `broadcast` channel of the same depth allocates and
//! writes every slot up front (65,536 lease and guest slots were 16 MiB of
//! the idle daemon's resident memory). An event that finds the queue full
//! is counted and dropped, and the counter is told by the receiver, as a
//! lagging broadcast receiver was.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Creates a queue holding at most `depth` events not yet signalled.
pub fn queue<T>(depth: usize) -> SignalQueue<T> {
    let (tx, rx) = mpsc::channel(depth);
    let dropped = Arc::new(AtomicU64::new(0));
    SignalQueue {
        sender: SignalSender {
            tx,
            dropped: dropped.clone(),
        },
        receiver: Mutex::new(Some(SignalReceiver { rx, dropped })),
    }
}

/// Both ends; the receiver is taken once, by the task that signals.
pub struct SignalQueue<T> {
    sender: SignalSender<T>,
    receiver: Mutex<Option<SignalReceiver<T>>>,
}

impl<T> SignalQueue<T> {
    pub fn sender(&self) -> SignalSender<T> {
        self.sender.clone()
    }

    pub fn send(&self, event: T) {
        self.sender.send(event);
    }

    /// The receiving end, the first time it is asked for.
    pub fn take_receiver(&self) -> Option<SignalReceiver<T>> {
        self.receiver.lock().expect("signal queue lock").take()
    }
}

pub struct SignalSender<T> {
    tx: mpsc::Sender<T>,
    dropped: Arc<AtomicU64>,
}

impl<T> Clone for SignalSender<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            dropped: self.dropped.clone(),
        }
    }
}

impl<T> SignalSender<T> {
    /// Queues `event` without waiting; a full queue drops it and counts it.
    /// Nobody listening (no receiver yet, or it ended) is not an error.
    pub fn send(&self, event: T) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(event) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub struct SignalReceiver<T> {
    rx: mpsc::Receiver<T>,
    dropped: Arc<AtomicU64>,
}

impl<T> SignalReceiver<T> {
    /// The next event, or `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<T> {
        self.rx.recv().await
    }

    /// How many events were dropped since the last call.
    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        let q = queue(2);
        let mut rx = q.take_receiver().expect("first take");
        assert!(q.take_receiver().is_none());
        for i in 0..5 {
            q.send(i);
        }
        assert_eq!(rx.take_dropped(), 3);
        assert_eq!(rx.recv().await, Some(0));
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.take_dropped(), 0);
        q.send(9);
        assert_eq!(rx.recv().await, Some(9));
    }
}
