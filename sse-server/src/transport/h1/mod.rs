//! The lean HTTP/1.1 path for subscriptions, laid out like hyper's `proto/h1`: the request and
//! response heads (`head.rs`), chunk framing (`chunk.rs`) and the connection loop (`conn.rs`). The
//! flushers that write live events to connections that lent the hub their socket are shared with
//! HTTP/2 (`transport/flusher.rs`).

pub(crate) mod chunk;
pub(crate) mod conn;
pub(crate) mod head;
