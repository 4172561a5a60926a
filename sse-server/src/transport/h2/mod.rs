//! HTTP/2 (h2c with prior knowledge, or TLS with ALPN `h2`) served with the `h2` crate directly
//! rather than through hyper, so that a subscription's stream can be lent to the hub like a lean
//! HTTP/1.1 socket: the connection's task (`conn.rs`), a subscription's stream and the sink a
//! flusher writes through (`stream.rs`), what is queued on and read from streams (`data.rs`), and the socket the
//! connection writes through, corked so that a round's frames leave in few writes (`corked.rs`).

pub(crate) mod conn;
pub(crate) mod corked;
pub(crate) mod data;
pub(crate) mod stream;
