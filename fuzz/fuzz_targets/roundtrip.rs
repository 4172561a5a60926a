//! Arbitrary events: every event the builder accepts must parse back from its encoding exactly.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sse_proto::{Event, Item, Parser, encode};

#[derive(Debug, Arbitrary)]
struct Spec {
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
    retry_ms: Option<u64>,
    split: u16,
}

fuzz_target!(|spec: Spec| {
    let mut b = Event::builder();
    if let Some(id) = &spec.id {
        b = b.id(id.clone());
    }
    if let Some(ev) = &spec.event {
        b = b.event(ev.clone());
    }
    if let Some(d) = &spec.data {
        b = b.data(d.clone());
    }
    if let Some(ms) = spec.retry_ms {
        b = b.retry(Duration::from_millis(ms));
    }
    let Ok(event) = b.build() else {
        // Refused only for what the wire cannot carry.
        let id_bad = spec
            .id
            .as_deref()
            .is_some_and(|i| i.contains(['\r', '\n', '\0']));
        let ev_bad = spec
            .event
            .as_deref()
            .is_some_and(|e| e.contains(['\r', '\n']));
        assert!(id_bad || ev_bad);
        return;
    };
    let wire = encode(&event);
    let at = usize::from(spec.split) % (wire.len() + 1);
    let mut p = Parser::new();
    p.feed(&wire[..at]);
    p.feed(&wire[at..]);
    let items: Vec<Item> = p
        .by_ref()
        .map(|r| r.expect("no limit is reached"))
        .collect();
    let mut expected = Vec::new();
    if let Some(r) = event.retry() {
        expected.push(Item::Retry(r));
    }
    if let Some(data) = event.data() {
        expected.push(Item::Message(sse_proto::Message {
            event_type: event.event().unwrap_or("message").into(),
            data: data.into(),
            last_event_id: event.id().unwrap_or("").into(),
        }));
    }
    assert_eq!(items, expected);
    assert_eq!(p.last_event_id(), event.id().unwrap_or(""));
});
