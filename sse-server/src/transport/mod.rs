//! The transport: the accept loop and connection limits, TLS, the lean HTTP/1.1 and HTTP/2 paths, and the
//! flushers that write what the hub offers through the seam (`hub/lent.rs`, `hub/round.rs`).
//! Every `WouldBlock` and partial-write rule lives in one adapter, `io.rs`.

pub(crate) mod flusher;
pub(crate) mod forwarded;
pub(crate) mod h1;
pub(crate) mod h2;
pub(crate) mod idle;
pub(crate) mod io;
pub(crate) mod limits;
#[cfg(feature = "tls")]
pub(crate) mod record;
#[cfg(feature = "tls")]
pub(crate) mod sealed;
pub(crate) mod server;
#[cfg(feature = "tls")]
pub(crate) mod tls;
