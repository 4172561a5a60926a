//! A request extension the transport adds to every request: the client's address and the
//! subscription counts of its connection and of its address, so the service can bound
//! subscriptions per connection and per IP (an anonymous client could otherwise open hundreds of
//! HTTP/2 streams on each of its connections and fill the channel table).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The subscription limits and the per-IP counts, shared by all connections of a server.
#[derive(Debug)]
pub(crate) struct SubscriptionLimits {
    per_connection: usize,
    per_ip: usize,
    retry_after: Duration,
    per_ip_open: Mutex<HashMap<IpAddr, usize>>,
}

impl SubscriptionLimits {
    pub(crate) fn new(per_connection: usize, per_ip: usize, retry_after: Duration) -> Arc<Self> {
        Arc::new(SubscriptionLimits {
            per_connection: per_connection.max(1),
            per_ip: per_ip.max(1),
            retry_after,
            per_ip_open: Mutex::new(HashMap::new()),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_ip_open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Marks a request with its client (the forwarded client behind a trusted proxy) and its connection.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    ip: IpAddr,
    /// Subscriptions open on this connection.
    connection: Arc<AtomicUsize>,
    limits: Arc<SubscriptionLimits>,
}

/// Why a subscription was refused: which limit, and how long the client should wait.
#[derive(Debug)]
pub(crate) struct OverLimit {
    pub(crate) message: String,
    pub(crate) retry_after: Duration,
}

impl Peer {
    /// A peer on a new connection.
    pub(crate) fn new(ip: IpAddr, limits: Arc<SubscriptionLimits>) -> Peer {
        Peer {
            ip,
            connection: Arc::new(AtomicUsize::new(0)),
            limits,
        }
    }

    /// The same connection, with the client address `ip` (a request's forwarded client).
    pub(crate) fn with_ip(&self, ip: IpAddr) -> Peer {
        Peer { ip, ..self.clone() }
    }

    /// A place for one more subscription, held until the returned [`Place`] drops.
    #[cfg(test)]
    pub(crate) fn acquire(&self) -> Result<Place, OverLimit> {
        self.acquire_n(1)
    }

    /// `n` places at once (a multi-channel stream counts once per entry), held by one [`Place`]
    /// until it drops: all or none.
    pub(crate) fn acquire_n(&self, n: usize) -> Result<Place, OverLimit> {
        let limits = &self.limits;
        let refuse = |message: String| OverLimit {
            message,
            retry_after: limits.retry_after,
        };
        let on_connection = self.connection.fetch_add(n, Ordering::AcqRel);
        if on_connection.saturating_add(n) > limits.per_connection {
            self.connection.fetch_sub(n, Ordering::AcqRel);
            return Err(refuse(format!(
                "too many subscriptions on this connection (limit {}); open another connection or close some streams",
                limits.per_connection
            )));
        }
        let mut table = limits.table();
        let open = table.entry(self.ip).or_insert(0);
        if open.saturating_add(n) > limits.per_ip {
            drop(table);
            self.connection.fetch_sub(n, Ordering::AcqRel);
            return Err(refuse(format!(
                "too many subscriptions from this address (limit {}); close some streams and retry later",
                limits.per_ip
            )));
        }
        *open += n;
        if *open == 0 {
            table.remove(&self.ip);
        }
        Ok(Place {
            peer: self.clone(),
            n,
        })
    }
}

/// One subscription's share of its connection's and its address's counts (`n`: one per entry it
/// follows); released on drop.
#[derive(Debug)]
pub(crate) struct Place {
    peer: Peer,
    n: usize,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.peer.connection.fetch_sub(self.n, Ordering::AcqRel);
        let mut table = self.peer.limits.table();
        if let Some(open) = table.get_mut(&self.peer.ip) {
            *open = open.saturating_sub(self.n);
            if *open == 0 {
                table.remove(&self.peer.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_bounded_per_connection_and_per_ip_and_released_on_drop() {
        let limits = SubscriptionLimits::new(2, 3, Duration::from_secs(5));
        let ip: IpAddr = [127, 0, 0, 1].into();
        let a = Peer::new(ip, limits.clone());
        let b = Peer::new(ip, limits.clone());
        let a1 = a.acquire().map_err(|e| e.message).unwrap();
        let _a2 = a.acquire().map_err(|e| e.message).unwrap();
        assert!(a.acquire().unwrap_err().message.contains("connection"));
        let _b1 = b.acquire().map_err(|e| e.message).unwrap();
        assert!(b.acquire().unwrap_err().message.contains("address"));
        let other = Peer::new([127, 0, 0, 2].into(), limits.clone());
        let _c = other.acquire().map_err(|e| e.message).unwrap();
        drop(a1);
        let _b2 = b.acquire().map_err(|e| e.message).unwrap();
        assert_eq!(limits.table().get(&ip), Some(&3));
    }

    #[test]
    fn several_places_are_taken_all_or_none_and_released_together() {
        let limits = SubscriptionLimits::new(5, 6, Duration::from_secs(5));
        let ip: IpAddr = [127, 0, 0, 1].into();
        let a = Peer::new(ip, limits.clone());
        let four = a.acquire_n(4).map_err(|e| e.message).unwrap();
        assert!(a.acquire_n(2).unwrap_err().message.contains("connection"));
        assert_eq!(
            a.connection.load(Ordering::Acquire),
            4,
            "a refusal takes none"
        );
        let b = Peer::new(ip, limits.clone());
        assert!(b.acquire_n(3).unwrap_err().message.contains("address"));
        let _two = b.acquire_n(2).map_err(|e| e.message).unwrap();
        drop(four);
        assert_eq!(a.connection.load(Ordering::Acquire), 0);
        assert_eq!(limits.table().get(&ip), Some(&2));
    }
}
