//! How long to wait before the next connection attempt: the reconnection time, grown exponentially
//! after consecutive failures, capped, and jittered so that many clients do not reconnect in step.

use std::time::Duration;

/// Exponential backoff with jitter and a cap, applied on top of the reconnection time (3 s by
/// default, or whatever the server's last `retry:` field said).
///
/// With `n` consecutive failed attempts (an attempt fails when it does not open, or opens but
/// delivers no event and no id before it ends), the delay is
/// `min(max_delay, reconnection_time × factor^(n-1))`, then reduced by a random fraction of up to
/// `jitter` of itself, but never below the reconnection time. After a connection that delivered
/// something, `n` is 0 and the delay is exactly the reconnection time, as the spec says. The cap also
/// bounds a huge `retry:` value from the server.
///
/// ```
/// use std::time::Duration;
/// use sse_client::Backoff;
///
/// let b = Backoff::new().factor(2.0).max_delay(Duration::from_secs(10)).jitter(0.0);
/// let rt = Duration::from_secs(1);
/// let delays: Vec<_> = (0..6).map(|n| b.delay(rt, n, 0.5)).collect();
/// assert_eq!(delays.iter().map(Duration::as_secs).collect::<Vec<_>>(), [1, 1, 2, 4, 8, 10]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    factor: f64,
    max_delay: Duration,
    jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

impl Backoff {
    /// Factor 2, cap 30 s, jitter 0.5 (each backoff delay is drawn from its upper half).
    ///
    /// ```
    /// assert_eq!(sse_client::Backoff::new().get_max_delay(), std::time::Duration::from_secs(30));
    /// ```
    pub fn new() -> Backoff {
        Backoff {
            factor: 2.0,
            max_delay: Duration::from_secs(30),
            jitter: 0.5,
        }
    }

    /// Growth per consecutive failure (at least 1; 1 means no growth).
    ///
    /// ```
    /// let b = sse_client::Backoff::new().factor(3.0);
    /// # drop(b);
    /// ```
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = if factor.is_finite() {
            factor.max(1.0)
        } else {
            1.0
        };
        self
    }

    /// The longest delay between two attempts.
    ///
    /// ```
    /// let b = sse_client::Backoff::new().max_delay(std::time::Duration::from_secs(60));
    /// assert_eq!(b.get_max_delay().as_secs(), 60);
    /// ```
    pub fn max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay;
        self
    }

    /// The largest fraction (0 to 1) removed at random from a backoff delay; 0 makes delays
    /// deterministic.
    ///
    /// ```
    /// let b = sse_client::Backoff::new().jitter(0.0);
    /// # drop(b);
    /// ```
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// The configured cap.
    ///
    /// ```
    /// assert!(sse_client::Backoff::new().get_max_delay() > std::time::Duration::ZERO);
    /// ```
    pub fn get_max_delay(&self) -> Duration {
        self.max_delay
    }

    /// The delay before the next attempt after `failures` consecutive failed attempts, given the
    /// current reconnection time and a `random` number in `[0, 1)` (the jitter draw).
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = sse_client::Backoff::new();
    /// let rt = Duration::from_millis(100);
    /// assert_eq!(b.delay(rt, 0, 0.9), rt);
    /// let d = b.delay(rt, 3, 0.9);
    /// assert!(d >= rt && d <= Duration::from_millis(400));
    /// ```
    pub fn delay(&self, reconnection_time: Duration, failures: u32, random: f64) -> Duration {
        let floor = reconnection_time.min(self.max_delay);
        let exponent = i32::try_from(failures.saturating_sub(1)).unwrap_or(i32::MAX);
        // Growth starts from at least 1 ms, so `retry: 0` cannot turn repeated failures into a hot loop.
        let base = floor.max(Duration::from_millis(1)).min(self.max_delay);
        let grown = if failures <= 1 {
            floor.as_secs_f64()
        } else {
            base.as_secs_f64() * self.factor.powi(exponent)
        };
        let capped = if grown.is_finite() {
            grown.min(self.max_delay.as_secs_f64())
        } else {
            self.max_delay.as_secs_f64()
        };
        let random = if random.is_finite() {
            random.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let jittered = capped * (1.0 - self.jitter * random);
        Duration::try_from_secs_f64(jittered)
            .unwrap_or(self.max_delay)
            .clamp(floor, self.max_delay.max(floor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_is_capped_and_never_below_the_reconnection_time() {
        let b = Backoff::new().max_delay(Duration::from_millis(800));
        let rt = Duration::from_millis(100);
        for failures in 0..100 {
            for random in [0.0, 0.3, 0.999] {
                let d = b.delay(rt, failures, random);
                assert!(d >= rt, "{d:?} < reconnection time");
                assert!(d <= Duration::from_millis(800), "{d:?} above cap");
            }
        }
        let no_jitter = b.jitter(0.0);
        assert_eq!(no_jitter.delay(rt, 4, 0.7), Duration::from_millis(800));
        assert_eq!(no_jitter.delay(rt, 3, 0.7), Duration::from_millis(400));
    }

    #[test]
    fn jitter_spreads_delays() {
        let b = Backoff::new();
        let rt = Duration::from_secs(1);
        assert_ne!(b.delay(rt, 3, 0.0), b.delay(rt, 3, 0.9));
        assert_eq!(b.delay(rt, 3, 0.0), Duration::from_secs(4));
        assert_eq!(b.delay(rt, 3, 1.0), Duration::from_secs(2));
    }

    #[test]
    fn a_zero_reconnection_time_still_backs_off() {
        let b = Backoff::new().jitter(0.0);
        assert_eq!(b.delay(Duration::ZERO, 0, 0.0), Duration::ZERO);
        assert_eq!(b.delay(Duration::ZERO, 1, 0.0), Duration::ZERO);
        assert_eq!(b.delay(Duration::ZERO, 3, 0.0), Duration::from_millis(4));
        assert_eq!(b.delay(Duration::ZERO, 40, 0.0), Duration::from_secs(30));
    }

    #[test]
    fn a_huge_retry_is_capped() {
        let b = Backoff::new();
        assert_eq!(
            b.delay(Duration::from_secs(1_000_000), 0, 0.0),
            Duration::from_secs(30)
        );
    }
}
