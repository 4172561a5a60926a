//! # sse-server: a Server-Sent Events hub
//!
//! Channels, broadcast, `Last-Event-ID` replay and a publish API, as a library (a [`Hub`] plus a
//! `tower::Service`, [`HubService`]) and as the ready-to-run `sse-server` binary.
//!
//! ```text
//! publish(channel, Event) ──▶ ReplayStore::append (position, id, encode once) ──▶ Bytes
//!                                                     │                            ├──▶ subscriber queue ──▶ HTTP body
//!                                                     ▼                            └──▶ subscriber queue ──▶ HTTP body
//! subscribe(channel, Last-Event-ID) ──register──▶ replay window after that id ──▶ then live events
//! ```
//!
//! * Every event is encoded once ([`sse_proto::encode`]); all subscribers share the same [`bytes::Bytes`].
//! * Ids: the hub assigns `"<epoch>-<counter>"` ids ([`Position`]) to events published without one;
//!   they stay unique and ordered across restarts. Publisher-supplied ids are kept and mapped to
//!   positions while retained.
//! * Replay: a subscriber resuming with `Last-Event-ID` gets every retained event after it with no gap
//!   and no duplicate, then live events. An unknown or expired id gets an in-band `sse-reset` event
//!   first (see [`Hub`] for the policy).
//! * Slow subscribers: each has a bounded queue ([`HubBuilder::queue_size`]); one that overflows is
//!   disconnected (and counted in [`Metrics`]) instead of slowing anybody else.
//! * Idle streams carry a heartbeat comment (default every 15 s); shutdown ends every stream with a
//!   randomised `retry:`.
//! * Authorization: JWTs (HS256/RS256/ES256) granting channels to subscribe to and publish on, public
//!   channels, expiry that ends a stream with an in-band `sse-expired` event ([`Auth`],
//!   [`HubService::authorization`]); connection limits and header timeouts ([`Limits`],
//!   [`Server::limits`]). SECURITY.md at the repository root lists every limit and its default.
//!
//! Without an [`Auth`], subscribing is open to anyone (add one, an `on_subscribe` hook or a tower
//! layer); the hub keeps the replay window in memory unless given another [`ReplayStore`].
//!
//! ```
//! use futures_util::StreamExt;
//! use sse_proto::Event;
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! let hub = sse_server::Hub::builder().replay_events(100).build();
//! let mut sub = hub.subscribe("news", None).await?;
//! let id = hub.publish("news", Event::builder().event("headline").data("SSE hub ships").build()?).await?;
//! let bytes = sub.next().await.unwrap();
//! assert_eq!(bytes, format!("id: {id}\nevent: headline\ndata: SSE hub ships\n\n"));
//! # Ok::<(), sse_server::Error>(()) })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Mounting in axum and hyper
//!
//! [`HubService`] is a `tower::Service`, so it mounts wherever HTTP services go. In axum, nest it
//! under a path with [`HubService::nested`] (its routes are then relative to the mount point), and
//! give `with_graceful_shutdown` the [`graceful_shutdown`] future: it ends every open stream when the
//! signal comes, without which axum would wait for them forever.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let hub = sse_server::Hub::builder().build();
//! let app = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { "the application" }))
//!     // GET/POST/DELETE /events/{channel} and POST /events (broadcast), as at the root.
//!     .nest_service("/events", sse_server::HubService::new(hub.clone()).nested().publish_token("secret"));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! let ctrl_c = async { let _ = tokio::signal::ctrl_c().await; };
//! axum::serve(listener, app)
//!     .with_graceful_shutdown(sse_server::graceful_shutdown(hub, ctrl_c))
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! In hyper, serve each connection with it, mounted at the root (`/events/{channel}`, `/channels`,
//! `/healthz`, `/metrics`):
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use hyper_util::{rt::{TokioExecutor, TokioIo}, server::conn::auto, service::TowerToHyperService};
//! let hub = sse_server::Hub::builder().build();
//! let service = sse_server::HubService::new(hub.clone()).publish_token("secret");
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! loop {
//!     let (stream, _) = listener.accept().await?;
//!     let service = TowerToHyperService::new(service.clone());
//!     tokio::spawn(async move {
//!         let _ = auto::Builder::new(TokioExecutor::new())
//!             .serve_connection(TokioIo::new(stream), service)
//!             .await;
//!     });
//! }
//! # }
//! ```
//!
//! Or let [`Server`] accept the connections: it adds connection limits, TLS, a lean path for idle
//! subscribers and the graceful shutdown. `examples/axum.rs` and `examples/hyper.rs` are complete
//! programs (the hyper one with graceful shutdown).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod error;
mod http;
mod hub;
mod position;
mod replay;
mod transport;

pub use error::Error;
#[cfg(feature = "jwt")]
pub use http::auth::{Auth, AuthBuilder, ChannelPattern, DEFAULT_COOKIE, JwtKey};
pub use http::body::Body;
pub use http::publish::{BodyError, MAX_RETRY_MS, parse_publish_body};
pub use http::service::HubService;
pub use hub::builder::HubBuilder;
pub use hub::config::Config;
pub use hub::control::{EXPIRED_EVENT, RESET_EVENT};
pub use hub::handle::{ChannelInfo, Hub};
pub use hub::hooks::{OnSubscribe, OnUnsubscribe, SubscribeInfo};
pub use hub::metrics::Metrics;
pub use hub::multi::SubscribeOptions;
pub use hub::subscription::Subscription;
pub use position::{Position, PositionParseError};
pub use replay::{
    BoxFuture, Live, LiveFeed, LiveSink, MemoryStore, Replay, ReplayStore, Reset, ResetReason,
    Retention, StoredChannel, StoredEvent,
};
#[cfg(feature = "durable")]
pub use replay::{CommitMode, DurableStore, DurableStoreBuilder, STORE_FILE};
#[cfg(feature = "redis")]
pub use replay::{RedisAck, RedisStore, RedisStoreBuilder};
/// The protocol crate this hub encodes with, re-exported so versions match.
pub use sse_proto;
pub use transport::limits::Limits;
pub use transport::server::{Server, graceful_shutdown};
#[cfg(feature = "tls")]
pub use transport::tls::tls_acceptor;
