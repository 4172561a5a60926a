//! The client's protocol core, without I/O: the reconnecting EventSource as a state machine, in the
//! style of quinn-proto. Bring your own HTTP client (or a simulated clock) and drive it.
//!
//! ```text
//!   driver (EventSource on reqwest, or yours)                    Connection
//!   ─────────────────────────────────────────   response(now, status, headers, date)
//!   send the request   ◀── Action::Connect ──   bytes(now, chunk) · eof(now) · failed(now, error)
//!   hand over events   ◀── Action::Deliver ──   handle_timeout(now) when poll_timeout() passes
//!   report, drop I/O   ◀── Action::Error ────   poll(now) → the next Action, until None
//! ```
//!
//! The machine owns the [`sse_proto::Parser`], the reconnection time, the backoff and its jitter
//! (seedable), the retry policy, the Last-Event-ID committed at each dispatched event and the idle
//! timeout. Its timers are deadlines read with [`Connection::poll_timeout`], so it runs the same on
//! a real clock and a simulated one; it never sleeps, spawns or reads a clock.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use sse_client::proto::{Action, Config, Connection};
//!
//! let start = Instant::now();
//! let mut conn = Connection::new(Config::new().idle_timeout(Some(Duration::from_secs(10))));
//! assert!(matches!(conn.poll(start), Some(Action::Connect { .. })));
//! // No answer: ten seconds later the request is considered dead and retried after 3 s.
//! let later = conn.poll_timeout().unwrap();
//! assert_eq!(later - start, Duration::from_secs(10));
//! conn.handle_timeout(later);
//! let Some(Action::Error(e)) = conn.poll(later) else { panic!() };
//! assert_eq!(e.retry_delay(), Some(Duration::from_secs(3)));
//! ```

mod connection;
mod timer;

pub use connection::{Action, Config, Connection};
