//! The machine's deadlines: one slot per kind of timer, as in quinn-proto's `connection/timer.rs`.
//! A timer is a point in time, not a sleeping future, so the machine can be driven on simulated time.

use std::time::{Duration, Instant};

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The wait before the next connection attempt (reconnection time, backoff, `Retry-After`).
    Reconnect,
    /// No byte arrived for the idle timeout: the request or the stream is considered dead.
    Idle,
}

impl Timer {
    const ALL: [Timer; 2] = [Timer::Reconnect, Timer::Idle];

    fn slot(self) -> usize {
        match self {
            Timer::Reconnect => 0,
            Timer::Idle => 1,
        }
    }
}

/// The armed deadlines, at most one per [`Timer`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TimerTable {
    deadlines: [Option<Instant>; 2],
}

impl TimerTable {
    /// Arms `timer` to fire at `deadline`, replacing its previous deadline.
    pub(crate) fn set(&mut self, timer: Timer, deadline: Instant) {
        self.deadlines[timer.slot()] = Some(deadline);
    }

    /// Disarms `timer`.
    pub(crate) fn stop(&mut self, timer: Timer) {
        self.deadlines[timer.slot()] = None;
    }

    /// Disarms every timer.
    pub(crate) fn stop_all(&mut self) {
        self.deadlines = [None; 2];
    }

    /// The earliest armed deadline.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Disarms and returns a timer whose deadline is at or before `now`, the earliest first.
    pub(crate) fn expire(&mut self, now: Instant) -> Option<Timer> {
        let timer = Timer::ALL
            .into_iter()
            .filter(|t| self.deadlines[t.slot()].is_some_and(|d| d <= now))
            .min_by_key(|t| self.deadlines[t.slot()])?;
        self.stop(timer);
        Some(timer)
    }
}

/// `now + delay`, saturating: a delay too long to represent (a huge `Retry-After`) means "about 30
/// years", as tokio does for its own far future.
pub(crate) fn after(now: Instant, delay: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);
    now.checked_add(delay)
        .or_else(|| now.checked_add(FAR))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_the_earliest_due_timer_once() {
        let t0 = Instant::now();
        let mut table = TimerTable::default();
        assert_eq!(table.next_timeout(), None);
        table.set(Timer::Idle, t0 + Duration::from_secs(2));
        table.set(Timer::Reconnect, t0 + Duration::from_secs(1));
        assert_eq!(table.next_timeout(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(table.expire(t0), None);
        assert_eq!(
            table.expire(t0 + Duration::from_secs(5)),
            Some(Timer::Reconnect)
        );
        assert_eq!(table.expire(t0 + Duration::from_secs(5)), Some(Timer::Idle));
        assert_eq!(table.expire(t0 + Duration::from_secs(5)), None);
        assert_eq!(table.next_timeout(), None);
    }

    #[test]
    fn a_huge_delay_saturates() {
        let t0 = Instant::now();
        assert!(after(t0, Duration::MAX) > t0 + Duration::from_secs(86_400 * 365));
    }
}
