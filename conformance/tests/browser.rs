//! A real browser against our stack: Debian's headless Chromium runs `EventSource` pages
//! (`peers/browser/*.js`) served same-origin by the real `sse-server` hub, and reports what it saw to a
//! collector route. Chromium is also the reference parser for every conformance vector.
//!
//! Missing Chromium: a loud SKIPPED line, unless `SSE_REQUIRE_BROWSER=1` (CI), which makes it fatal.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod peer_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conformance::{VectorItem, load_all, parse_chunks};
use peer_support::{Browser, Harness, WAIT, chromium, event_stream, is_kind, status};
use serde_json::{Value, json};
use sse_server::Hub;

fn browser() -> Option<std::path::PathBuf> {
    let found = chromium();
    peer_support::available("chromium", found.is_some(), "SSE_REQUIRE_BROWSER")
        .then_some(found)
        .flatten()
}

fn message(kind: &str, ty: &str, data: &str, id: &str) -> Value {
    json!({"kind": kind, "type": ty, "data": data, "lastEventId": id})
}

/// Strips the page's sequence number so reports compare by content.
fn content(reports: &[Value]) -> Vec<Value> {
    reports
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.as_object_mut().unwrap().remove("seq");
            r
        })
        .collect()
}

/// Published events arrive with the right type/data/lastEventId (named ones through
/// `addEventListener`); when the hub drops the connection, Chromium waits the hub's `retry:` hint
/// (longer than its own 3 s default, so the wait proves the hint was honoured), reconnects with its own
/// `Last-Event-ID` and is replayed exactly the events it missed.
#[tokio::test]
async fn chromium_receives_named_events_and_is_replayed_after_a_drop() {
    let Some(chromium) = browser() else { return };
    // Chromium's default reconnection time is 3 s; the hint must visibly replace it.
    let retry_hint = Duration::from_millis(4500);
    let mut h = Harness::builder()
        .hub(Hub::builder().heartbeat(None).retry(Some(retry_hint)))
        .start()
        .await;
    let _browser = Browser::open(&chromium, &h.url("/page/hub?channel=chrome")).await;
    h.reports_until(WAIT, is_kind("open")).await;

    let id1 = h.publish("chrome", json!({"data": "one"})).await;
    let id2 = h
        .publish("chrome", json!({"event": "named", "data": "two\nlines"}))
        .await;
    let id3 = h
        .publish("chrome", json!({"data": " three ✓", "id": "custom-3"}))
        .await;
    assert_eq!(id3, "custom-3");
    let live = h.reports_until(WAIT, |r| r["data"] == " three ✓").await;
    assert_eq!(
        content(&live),
        vec![
            message("message", "message", "one", &id1),
            message("named", "named", "two\nlines", &id2),
            message("message", "message", " three ✓", "custom-3"),
        ]
    );

    // Drop the stream and publish while the browser is away.
    let dropped_at = Instant::now();
    h.close_channel("chrome").await;
    let id4 = h.publish("chrome", json!({"data": "four"})).await;
    let id5 = h
        .publish("chrome", json!({"event": "named", "data": "five"}))
        .await;
    let after = h.reports_until(WAIT, |r| r["data"] == "five").await;
    assert_eq!(
        content(&after),
        vec![
            json!({"kind": "error", "readyState": 0}),
            json!({"kind": "open", "readyState": 1}),
            message("message", "message", "four", &id4),
            message("named", "named", "five", &id5),
        ],
        "after the drop: one error (CONNECTING), one reopen, then exactly the missed events"
    );
    let subs = h.subscriptions();
    assert_eq!(subs.len(), 2, "{subs:?}");
    assert_eq!(subs[0].last_event_id, None);
    assert_eq!(
        subs[1].last_event_id.as_deref(),
        Some("custom-3"),
        "Chromium resumes with the id of the last event it saw"
    );
    let waited = subs[1].at.duration_since(dropped_at);
    assert!(
        waited >= retry_hint - Duration::from_millis(300),
        "Chromium reconnected after {waited:?}, before the hub's retry: hint of {retry_hint:?}"
    );
    h.stop().await;
}

/// A browser resuming from an id that fell out of the hub's replay window sees the hub's in-band
/// `sse-reset` event (reason, the id it sent, the oldest retained id) before the retained events.
#[tokio::test]
async fn chromium_sees_sse_reset_when_its_id_left_the_replay_window() {
    let Some(chromium) = browser() else { return };
    let mut h = Harness::builder()
        .hub(Hub::builder().heartbeat(None).replay_events(2))
        .start()
        .await;
    let mut ids = Vec::new();
    for n in 1..=4 {
        ids.push(h.publish("reset", json!({"data": format!("e{n}")})).await);
    }
    let _browser = Browser::open(
        &chromium,
        &h.url(&format!("/page/hub?channel=reset&lastEventId={}", ids[0])),
    )
    .await;
    let seen = h.reports_until(WAIT, |r| r["data"] == "e4").await;
    let seen = content(&seen);
    assert_eq!(seen.len(), 4, "{seen:#?}");
    assert_eq!(seen[0], json!({"kind": "open", "readyState": 1}));
    assert_eq!(seen[1]["kind"], "sse-reset");
    assert_eq!(seen[1]["type"], "sse-reset");
    let reset: Value = serde_json::from_str(seen[1]["data"].as_str().unwrap()).unwrap();
    assert_eq!(
        reset,
        json!({"reason": "expired", "lastEventId": ids[0], "oldest": ids[2]})
    );
    assert_eq!(seen[2], message("message", "message", "e3", &ids[2]));
    assert_eq!(seen[3], message("message", "message", "e4", &ids[3]));
    h.stop().await;
}

/// `retry:` from a scripted endpoint, then 204 on the reconnection: the source ends CLOSED and never
/// asks again (with `retry: 100` a source that kept going would reconnect many times). The reconnection
/// also shows which id Chromium committed: an id-only block counts, an `id:` in an event the stream cut
/// short does not.
#[tokio::test]
async fn chromium_stops_for_good_on_204() {
    let Some(chromium) = browser() else { return };
    let hits = Arc::new(AtomicUsize::new(0));
    let last_ids = Arc::new(Mutex::new(Vec::new()));
    let (hits2, last_ids2) = (hits.clone(), last_ids.clone());
    let mut h = Harness::builder()
        .extra(Arc::new(move |parts| {
            if parts.uri.path() != "/raw/stop" {
                return None;
            }
            let n = hits2.fetch_add(1, Ordering::SeqCst);
            last_ids2.lock().unwrap().push(
                parts
                    .headers
                    .get("last-event-id")
                    .map(|v| v.to_str().unwrap().to_owned()),
            );
            Some(if n == 0 {
                event_stream("retry: 100\nid: s1\ndata: first\n\nid: s2\n\nid: s3\ndata: cut short")
            } else {
                status(http::StatusCode::NO_CONTENT)
            })
        }))
        .start()
        .await;
    let _browser = Browser::open(&chromium, &h.url("/page/source?url=/raw/stop")).await;
    let seen = h
        .reports_until(WAIT, |r| r["kind"] == "error" && r["readyState"] == 2)
        .await;
    assert_eq!(
        content(&seen),
        vec![
            json!({"kind": "open", "readyState": 1}),
            message("message", "message", "first", "s1"),
            json!({"kind": "error", "readyState": 0}),
            json!({"kind": "error", "readyState": 2}),
        ]
    );
    let more = h.reports_within(Duration::from_millis(1500)).await;
    assert!(more.is_empty(), "reports after CLOSED: {more:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 2, "no request after the 204");
    assert_eq!(*last_ids.lock().unwrap(), vec![None, Some("s2".to_owned())]);
    h.stop().await;
}

/// A page on another origin: the hub's `--cors-origin` lets Chromium's EventSource in (the events
/// arrive); a hub without it is refused by the browser itself (the source fails for good: CLOSED).
#[tokio::test]
async fn chromium_cross_origin_needs_the_hubs_cors_origin() {
    let Some(chromium) = browser() else { return };
    let mut page = Harness::builder().start().await;
    let allowed = Harness::builder()
        .hub(
            Hub::builder()
                .heartbeat(None)
                .cors_origin(page.base.clone()),
        )
        .start()
        .await;
    let refused = Harness::builder().start().await;

    let url = allowed.url("/events/cors");
    let browser = Browser::open(&chromium, &page.url(&format!("/page/source?url={url}"))).await;
    page.reports_until(WAIT, is_kind("open")).await;
    let id = allowed
        .publish("cors", json!({"data": "across origins"}))
        .await;
    let seen = page.reports_until(WAIT, is_kind("message")).await;
    assert_eq!(
        content(&seen),
        vec![message("message", "message", "across origins", &id)]
    );

    drop(browser);
    let url = refused.url("/events/cors");
    let _other = Browser::open(&chromium, &page.url(&format!("/page/source?url={url}"))).await;
    let seen = page.reports_until(WAIT, is_kind("error")).await;
    assert_eq!(
        content(&seen),
        vec![json!({"kind": "error", "readyState": 2})],
        "without CORS headers the browser must refuse the stream"
    );
    allowed.stop().await;
    refused.stop().await;
    page.stop().await;
}

/// Ten EventSources from one page over HTTPS: the hub negotiates HTTP/2 (ALPN), so all ten are open at
/// once (HTTP/1.1 would stall the seventh), and each receives only its own channel's event.
#[tokio::test]
async fn chromium_opens_ten_channels_over_http2() {
    let Some(chromium) = browser() else { return };
    const N: usize = 10;
    let mut h = Harness::builder().tls().start().await;
    let _browser = Browser::open(&chromium, &h.url(&format!("/page/many?n={N}"))).await;
    let mut opened = BTreeSet::new();
    let mut protocol = Value::Null;
    while opened.len() < N {
        let r = h
            .reports_until(WAIT, |r| r["kind"] == "open" || r["kind"] == "protocol")
            .await;
        let last = r.last().unwrap();
        if last["kind"] == "protocol" {
            protocol = last["protocol"].clone();
        } else {
            opened.insert(last["i"].as_u64().unwrap());
        }
    }
    assert_eq!(protocol, "h2", "the page itself was not loaded over HTTP/2");
    let mut ids = BTreeMap::new();
    for i in 0..N {
        let id = h
            .publish(&format!("many-{i}"), json!({"data": format!("hello {i}")}))
            .await;
        ids.insert(i as u64, id);
    }
    let mut got = BTreeMap::new();
    while got.len() < N {
        let r = h.reports_until(WAIT, is_kind("message")).await;
        let m = r.last().unwrap();
        let i = m["i"].as_u64().unwrap();
        assert_eq!(m["data"], format!("hello {i}"), "channel isolation: {m}");
        assert_eq!(m["lastEventId"], ids[&i].as_str());
        assert!(got.insert(i, m.clone()).is_none(), "duplicate on {i}: {m}");
    }
    let channels: BTreeSet<String> = h.subscriptions().into_iter().map(|s| s.channel).collect();
    assert_eq!(channels.len(), N);
    h.stop().await;
}

/// Where Chromium disagrees with a vector's expected events (and so with sse-proto, which
/// `tests/vectors.rs` holds to the expectation): (vector, what Chromium dispatches as JSON, why).
/// Every entry is asserted exactly, so the list fails if Chromium changes.
const CHROMIUM_DEVIATIONS: &[(&str, &str, &str)] = &[(
    "bom-then-blank-line",
    "[]",
    "a line break right after the leading BOM is not seen as a line break: Blink's \
     EventSourceParser::AddBytes `continue`s past the byte following a recognised BOM without \
     checking it, so that LF joins the next line (`\\ndata: x` is an unknown field) and the event is \
     lost. WHATWG: the BOM is stripped by the UTF-8 decode, then the LF is an (empty) line.",
)];

/// Every conformance vector, byte for byte, through Chromium's parser: the events it dispatches
/// (type, data, lastEventId) must equal sse-proto's and the vector's expectation. `retry:` values and
/// the final committed id are not observable from a page without reconnecting, so only events are
/// compared.
#[tokio::test]
async fn chromium_and_sse_proto_agree_on_every_vector() {
    let Some(chromium) = browser() else { return };
    let vectors = load_all().unwrap();
    let bytes: Arc<BTreeMap<String, Vec<u8>>> = Arc::new(
        vectors
            .iter()
            .map(|v| (v.name.clone(), v.input.clone()))
            .collect(),
    );
    let mut ours = BTreeMap::new();
    let mut list = Vec::new();
    for v in &vectors {
        let parsed = parse_chunks([v.input.as_slice()]).unwrap();
        let events: Vec<Value> = parsed
            .items
            .iter()
            .filter_map(|i| match i {
                VectorItem::Message(m) => Some(serde_json::to_value(m).unwrap()),
                VectorItem::Retry(_) => None,
            })
            .collect();
        let mut types: BTreeSet<String> = ["message".to_owned()].into();
        for e in &events {
            types.insert(e["type"].as_str().unwrap().to_owned());
        }
        for item in &v.expected {
            if let VectorItem::Message(m) = item {
                types.insert(m.event_type.clone());
            }
        }
        assert!(
            !types.contains("error") && !types.contains("open"),
            "{}: a vector event named error/open would confuse the page",
            v.name
        );
        list.push(json!({"name": v.name, "types": types}));
        ours.insert(v.name.clone(), events);
    }
    let list = Arc::new(serde_json::to_vec(&list).unwrap());
    let mut h = Harness::builder()
        .extra(Arc::new(move |parts| {
            let path = parts.uri.path();
            if path == "/vectors.json" {
                let mut resp = http::Response::new(sse_server::Body::full(list.as_ref().clone()));
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                return Some(resp);
            }
            let name = path.strip_prefix("/vector/")?;
            Some(match bytes.get(name) {
                Some(b) => event_stream(b.clone()),
                None => status(http::StatusCode::NOT_FOUND),
            })
        }))
        .start()
        .await;
    let _browser = Browser::open(&chromium, &h.url("/page/vectors")).await;
    let reports = h
        .reports_until(Duration::from_secs(90), is_kind("done"))
        .await;
    let done = reports.last().unwrap();
    assert_eq!(done["count"], vectors.len());
    let mut deviations = Vec::new();
    let mut agreed = 0;
    for r in reports.iter().filter(|r| r["kind"] == "vector") {
        let name = r["name"].as_str().unwrap();
        assert_eq!(
            r["how"], "ended",
            "{name}: the stream did not end in Chromium"
        );
        let theirs = r["events"].as_array().unwrap();
        if theirs == &ours[name] {
            agreed += 1;
        } else {
            deviations.push((name.to_owned(), theirs.clone(), ours[name].clone()));
        }
    }
    let found: Vec<&str> = deviations.iter().map(|d| d.0.as_str()).collect();
    let known: Vec<&str> = CHROMIUM_DEVIATIONS.iter().map(|d| d.0).collect();
    assert_eq!(
        found, known,
        "Chromium vs sse-proto disagreements (vector, chromium, ours):\n{deviations:#?}"
    );
    for ((name, theirs, _), (_, recorded, why)) in deviations.iter().zip(CHROMIUM_DEVIATIONS) {
        let recorded: Value = serde_json::from_str(recorded).unwrap();
        assert_eq!(
            &Value::Array(theirs.clone()),
            &recorded,
            "{name}: Chromium's deviation changed ({why})"
        );
    }
    println!(
        "chromium parser: {agreed}/{} vectors agree with sse-proto",
        vectors.len()
    );
    h.stop().await;
}
