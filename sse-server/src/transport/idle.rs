//! The idle timeout of a connection served by hyper: closed once no request has been open on it for
//! the timeout. Why: an HTTP/2 connection with no open stream has no other timer (the header read
//! timeout covers only HTTP/1.1 between requests), so a client could hold one forever.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// The requests open on one connection, and a counter of their starts and ends.
#[derive(Debug, Clone, Default)]
pub(crate) struct Activity(Arc<Counts>);

#[derive(Debug, Default)]
struct Counts {
    open: AtomicUsize,
    changes: AtomicU64,
}

/// One open request (its response body included); dropping it ends it.
#[derive(Debug)]
pub(crate) struct Open(Arc<Counts>);

impl Activity {
    /// A request starts; it stays open until the returned guard drops.
    pub(crate) fn open(&self) -> Open {
        self.0.open.fetch_add(1, Ordering::AcqRel);
        self.0.changes.fetch_add(1, Ordering::AcqRel);
        Open(self.0.clone())
    }

    /// Completes once no request has been open for at least `timeout` (checked every `timeout`, so
    /// it completes between one and two timeouts after the last request ended).
    pub(crate) async fn idle(&self, timeout: Duration) {
        loop {
            let seen = self.0.changes.load(Ordering::Acquire);
            tokio::time::sleep(timeout).await;
            if self.0.open.load(Ordering::Acquire) == 0
                && self.0.changes.load(Ordering::Acquire) == seen
            {
                return;
            }
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.changes.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_waits_for_open_requests_and_a_quiet_timeout() {
        let activity = Activity::default();
        let open = activity.open();
        let t = Duration::from_millis(20);
        let waited = tokio::time::timeout(10 * t, activity.idle(t)).await;
        assert!(waited.is_err(), "idle while a request is open");
        drop(open);
        let start = tokio::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(5), activity.idle(t))
            .await
            .unwrap();
        assert!(start.elapsed() >= t);
    }
}
