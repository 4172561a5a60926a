//! The JSON shapes of the sse-contract-tests service protocol (launchdarkly/sse-contract-tests,
//! `docs/service_spec.md`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Optional features this service supports, reported by `GET /`. Not offered: `comments`
/// (`sse-client` does not surface comment lines) and `event-type-listeners` (our client delivers every
/// type without registration, the default the harness assumes).
pub const CAPABILITIES: &[&str] = &[
    "headers",
    "last-event-id",
    "post",
    "read-timeout",
    "report",
    "restart",
];

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
