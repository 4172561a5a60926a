//! The lean HTTP/1.1 path for subscriptions, laid out like hyper's `proto/h1`: the request and
//! response heads (`head.rs`), chunk framing (`chunk.rs`), the connection loop (`conn.rs`), and the
//! flushers that write live events as chunks to connections that lent the hub their socket
//! (`flusher.rs`).

pub(crate) mod chunk;
pub(crate) mod conn;
pub(crate) mod flusher;
pub(crate) mod head;
