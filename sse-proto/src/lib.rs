//! # sse-proto: the Server-Sent Events wire format, without I/O
//!
//! This crate turns outgoing [`Event`]s into bytes and incoming bytes into [`Item`]s, exactly as the
//! WHATWG HTML standard ("Server-sent events", 9.2) defines the `text/event-stream` format. It does no
//! network I/O, owns no clock and needs no async runtime: callers feed it bytes and take results out.
//!
//! ```text
//!  Event ──encode()──▶ Bytes ──(your transport)──▶ &[u8] chunks ──Parser::feed()──▶ Item (Message | Retry | Comment)
//! ```
//!
//! * [`Event`] / [`EventBuilder`]: what a server sends. The builder refuses what the wire cannot carry
//!   (CR or LF in `id` or `event`, NUL in `id`) with a typed [`Error`].
//! * [`encode`] / [`encode_into`]: one exactly-sized buffer per event; multi-line data becomes one
//!   `data:` line per line, so parsing the output gives back [`Event::data`] exactly.
//! * [`Parser`]: incremental. [`Parser::feed`] any chunking of the stream, iterate to take ready items,
//!   [`Parser::finish`] at end of stream. BOM, CR/LF/CRLF (also split across chunks), UTF-8 split across
//!   chunks, invalid UTF-8 as U+FFFD, and [`Limits`] on line and event size.
//! * [`Text`]: the fields of a parsed [`Message`], slices of the decoded input shared by reference
//!   count (no allocation per event); they dereference to `&str`.
//! * `stream` feature: [`EventStream`] adapts a `Stream` of byte chunks into a `Stream` of items.
//!
//! ```
//! use sse_proto::{encode, Event, Item, Parser};
//!
//! let event = Event::builder().id("7").event("greeting").data("hello\nworld").build()?;
//! let bytes = encode(&event);
//! assert_eq!(&bytes[..], b"id: 7\nevent: greeting\ndata: hello\ndata: world\n\n");
//!
//! let mut parser = Parser::new();
//! parser.feed(&bytes);
//! match parser.next() {
//!     Some(Ok(Item::Message(m))) => {
//!         assert_eq!((m.event_type.as_str(), m.data.as_str(), m.last_event_id.as_str()),
//!                    ("greeting", "hello\nworld", "7"));
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! # Ok::<(), sse_proto::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod decode;
mod encoder;
mod error;
mod event;
mod field;
mod limits;
mod parser;
#[cfg(feature = "stream")]
mod stream;
mod text;

pub use encoder::{encode, encode_into, encoded_len};
pub use error::{BoxError, Error};
pub use event::{Event, EventBuilder};
pub use limits::Limits;
pub use parser::{Item, Message, Parser, ParserBuilder};
#[cfg(feature = "stream")]
pub use stream::EventStream;
pub use text::Text;
