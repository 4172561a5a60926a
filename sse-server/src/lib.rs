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
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod auth;
mod body;
mod channel;
mod chunk;
mod config;
mod error;
mod expiry;
mod flush;
mod headers;
mod hooks;
mod hub;
mod limits;
mod metrics;
mod position;
mod publish;
mod replay;
mod server;
mod service;
mod subscription;
mod tls;

pub use auth::{Auth, AuthBuilder, ChannelPattern, DEFAULT_COOKIE, EXPIRED_EVENT, JwtKey};
pub use body::Body;
pub use config::{Config, HubBuilder};
pub use error::Error;
pub use hooks::{OnSubscribe, OnUnsubscribe, SubscribeInfo};
pub use hub::{ChannelInfo, Hub, RESET_EVENT};
pub use limits::Limits;
pub use metrics::Metrics;
pub use position::{Position, PositionParseError};
pub use publish::{BodyError, MAX_RETRY_MS, parse_publish_body};
pub use replay::{
    BoxFuture, CommitMode, DurableStore, DurableStoreBuilder, MemoryStore, Replay, ReplayStore,
    Reset, ResetReason, Retention, STORE_FILE, StoredChannel, StoredEvent,
};
pub use replay::{Live, LiveFeed, LiveSink, RedisStore, RedisStoreBuilder};
pub use server::Server;
pub use service::HubService;
pub use subscription::Subscription;
pub use tls::tls_acceptor;
