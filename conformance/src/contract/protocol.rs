//! The JSON shapes of the sse-contract-tests service protocol (launchdarkly/sse-contract-tests,
//! `docs/service_spec.md`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Optional features this service supports, reported by `GET /` (the capability names of
/// sse-contract-tests' `docs/optional_features.md` and its test sources):
///
/// * `bom`: the parser drops one leading UTF-8 byte-order mark per connection, also when it arrives
///   split across reads.
/// * `comments`: comment lines are reported as `{"kind": "comment", "comment": text}` (text after
///   the colon, as sent), through `EventSourceBuilder::comments`.
/// * `headers`, `last-event-id`, `post`, `report`: request settings of the create request.
/// * `read-timeout`: `readTimeoutMs` is the client's idle timeout.
/// * `restart`: the `restart` command reconnects at once from the committed id.
/// * `server-directed-shutdown-request`: a 204 No Content answer stops the client for good (no
///   reconnection); the service reports it as one error callback and then waits for `DELETE`.
///
/// Not offered: `event-type-listeners` (our client delivers every type without registration, the
/// default the harness assumes).
pub const CAPABILITIES: &[&str] = &[
    "bom",
    "comments",
    "headers",
    "last-event-id",
    "post",
    "read-timeout",
    "report",
    "restart",
    "server-directed-shutdown-request",
];

/// The parser limits of the service's clients: the harness's "large message" cases send lines of
/// about 7 and 14 MB, beyond the library's 1 MiB default line limit; these leave room for both.
/// (A module of the `contract-service` binary, so no doc-test; `conformance/tests/contract.rs`
/// sends a 3 MiB line through it.)
pub const LIMITS: sse_proto::Limits = sse_proto::Limits {
    max_line_length: 32 * 1024 * 1024,
    max_event_size: 64 * 1024 * 1024,
};

/// `GET /`: the service is up, and what it can do.
#[derive(Debug, Serialize)]
pub struct Status {
    pub capabilities: Vec<&'static str>,
}

/// `POST /`: create a stream.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateStream {
    pub stream_url: String,
    pub callback_url: String,
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub initial_delay_ms: Option<u64>,
    #[serde(default)]
    pub read_timeout_ms: Option<u64>,
    #[serde(default)]
    pub last_event_id: Option<String>,
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
}

/// `POST <stream URL>`: a command for an existing stream.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "command", rename_all = "camelCase")]
pub enum Command {
    /// Get ready for events of a type: a no-op, since every type is delivered (the `listen`
    /// object is accepted and ignored).
    Listen,
    /// Drop the connection and reconnect as if the server had dropped it.
    Restart,
}

/// The body of a callback POST.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Callback {
    /// An event was received.
    Event { event: EventBody },
    /// A comment line was received: its text after the colon.
    Comment { comment: String },
    /// The stream reported an error (the text says whether it reconnects).
    Error { comment: String },
}

/// An event as reported to the harness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBody {
    #[serde(rename = "type")]
    pub event_type: String,
    pub data: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub id: Option<String>,
}
