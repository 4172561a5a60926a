//! The JSON lines both `parse` and `listen --json` print, with the browser's field names.

use serde::Serialize;
use sse_proto::{Item, Message};

/// One output line: `{"type","data","lastEventId"}` for an event, `{"retry":N}` for a retry field,
/// `{"comment":"text"}` for a comment.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum JsonLine<'a> {
    /// A dispatched event.
    Event {
        #[serde(rename = "type")]
        event_type: &'a str,
        data: &'a str,
        #[serde(rename = "lastEventId")]
        last_event_id: &'a str,
    },
    /// A valid `retry:` field, in milliseconds.
    Retry { retry: u128 },
    /// A comment line's text after the colon (`listen --comments`).
    Comment { comment: &'a str },
}

impl<'a> JsonLine<'a> {
    /// The JSON line for a message.
    pub fn message(m: &'a Message) -> Self {
        JsonLine::Event {
            event_type: &m.event_type,
            data: &m.data,
            last_event_id: &m.last_event_id,
        }
    }

    /// The JSON line for a parsed item; comments have none.
    pub fn item(item: &'a Item) -> Option<Self> {
        match item {
            Item::Message(m) => Some(Self::message(m)),
            Item::Retry(d) => Some(JsonLine::Retry {
                retry: d.as_millis(),
            }),
            Item::Comment(_) => None,
        }
    }
}
