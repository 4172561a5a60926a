//! The hub: a transport-neutral core. Channels and their log, fan-out, the bounded subscriber
//! queue, subscriptions, resume (`Last-Event-ID` → replay → seam → `sse-reset`), the in-band
//! control events, hooks and keep-alive timing. It knows events, positions and encoded `Bytes`,
//! never sockets or HTTP framing: a connection lends it a socket through `lent::Sink`, and the
//! transport's flushers write what `round::Round` offers.

pub(crate) mod builder;
pub(crate) mod channel;
pub(crate) mod composite;
pub(crate) mod config;
pub(crate) mod control;
pub(crate) mod cursors;
pub(crate) mod expiry;
pub(crate) mod handle;
pub(crate) mod hooks;
pub(crate) mod lent;
pub(crate) mod log;
pub(crate) mod metrics;
pub(crate) mod multi;
pub(crate) mod name;
pub(crate) mod queue;
pub(crate) mod registry;
pub(crate) mod resume;
pub(crate) mod round;
pub(crate) mod rounds;
pub(crate) mod subscription;
