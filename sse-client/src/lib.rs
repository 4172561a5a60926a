//! # sse-client: a reconnecting Server-Sent Events client
//!
//! [`EventSource`] follows the WHATWG EventSource processing model on top of [`reqwest`] (rustls, no
//! OpenSSL) and [`sse_proto`]'s parser, and adds what production services need: custom requests,
//! backoff with jitter and a cap, a liveness (idle) timeout, an opt-in retry policy for 5xx/429, and a
//! credentials callback run before every connection.
//!
//! ```text
//!  reqwest request ──▶ response (200 + text/event-stream?) ──▶ bytes ──▶ sse_proto::Parser ──▶ Event
//!        ▲                                                                              │
//!        └── wait (reconnection time, backoff) ◀── EOF / error / idle ◀─────────────────┘
//!            then reconnect with Last-Event-ID = id committed at the last dispatch
//! ```
//!
//! It spawns no task: the connection, the request in flight and the timers belong to the
//! `EventSource` and run only while it is polled, so [`EventSource::close`] or dropping it stops
//! everything at once.
//!
//! Every decision (when to reconnect, with which `Last-Event-ID`, what a response or a silence means)
//! is made by [`proto::Connection`], a state machine without I/O fed responses, bytes and the current
//! time; `EventSource` only runs reqwest and one timer for it. Use `proto` directly to drive another
//! HTTP client, or to test reconnection on simulated time.
//!
//! ```no_run
//! use futures::StreamExt;
//! use sse_client::{Event, EventSource};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sse_client::Error> {
//! let request = reqwest::Client::new()
//!     .get("http://127.0.0.1:8080/events/news")
//!     .bearer_auth("secret");
//! let mut source = EventSource::from_request(request)
//!     .idle_timeout(Some(std::time::Duration::from_secs(60)))
//!     .build()?;
//! while let Some(item) = source.next().await {
//!     match item {
//!         Ok(Event::Message(m)) => println!("{}: {}", m.event_type, m.data),
//!         Ok(_) => {}
//!         Err(e) if e.is_fatal() => return Err(e),
//!         Err(e) => eprintln!("{e}"), // says when it reconnects
//!     }
//! }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod backoff;
mod builder;
mod credentials;
mod error;
mod event;
mod event_source;
pub mod proto;
mod reconnect;

pub use backoff::Backoff;
pub use builder::EventSourceBuilder;
pub use error::{BoxError, ERROR_BODY_LIMIT, ERROR_BODY_TIME, Error};
pub use event::{Event, Message, ReadyState};
pub use event_source::EventSource;
pub use reconnect::{DEFAULT_RECONNECTION_TIME, RetryPolicy};
/// The HTTP client this crate is built on, re-exported so versions match.
pub use reqwest;
/// The parser this crate uses; its [`Limits`](sse_proto::Limits) configure the source.
pub use sse_proto;
