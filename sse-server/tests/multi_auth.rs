//! Multi-channel subscriptions (`GET /events?channel=…`) under JWT and limits: every entry must lie
//! within the token's `subscribe` grants (a pattern only if one grant covers all of it), else 403
//! naming the first refused entry; replay, `sse-reset` windows, broadcasts and patterns never deliver
//! an event of a channel the token does not grant; and one anonymous client cannot create unbounded
//! channels or subscriptions by listing many entries.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod security_support;
mod support;

use std::process::Stdio;
use std::time::Duration;

use security_support::{SECRET, TOKEN, WAIT, grant, hs256};
use sse_server::{Auth, JwtKey, Limits};
use support::Reader;

async fn start_jwt() -> security_support::Hub {
    security_support::start(
        sse_server::Hub::builder(),
        |s| {
            s.authorization(
                Auth::builder()
                    .key(JwtKey::hs256(SECRET))
                    .public_channel("status/*")
                    .build(),
            )
        },
        Limits::default(),
    )
    .await
}

/// `/events?channel=…` for `entries` (sent raw: `/` and `*` are fine in a query).
fn many(entries: &[&str]) -> String {
    let list: Vec<String> = entries.iter().map(|e| format!("channel={e}")).collect();
    format!("/events?{}", list.join("&"))
}

/// Status, content type and body of an answer that is not a stream (empty body for a stream).
async fn answer(req: reqwest::RequestBuilder) -> (u16, String, String) {
    let resp = tokio::time::timeout(WAIT, req.send())
        .await
        .expect("request timed out")
        .unwrap();
    let status = resp.status().as_u16();
    let kind = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    if kind == "text/event-stream" {
        return (status, kind, String::new());
    }
    let body = tokio::time::timeout(WAIT, resp.text())
        .await
        .unwrap()
        .unwrap();
    (status, kind, body)
}

/// The `error` message of a JSON refusal.
fn message(body: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{body}"));
    json["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}

#[tokio::test]
async fn entries_must_lie_within_the_grants_and_403_names_the_first_refused_one() {
    let hub = start_jwt().await;
    let c = reqwest::Client::new();
    let get = |entries: &[&str], token: &str| c.get(hub.url(&many(entries))).bearer_auth(token);
    let users = hs256(grant(&["users/*", "team"], &[], 60));
    let one_user = hs256(grant(&["users/1"], &[], 60));
    let all = hs256(grant(&["*"], &[], 60));

    // Within: names and patterns the grant covers, nested patterns too, plus public channels.
    for entries in [
        &["team", "users/*"][..],
        &["users/1/*", "users/2"],
        &["users/1", "status/*", "status/a"],
    ] {
        let (s, kind, body) = answer(get(entries, &users)).await;
        assert_eq!(
            (s, kind.as_str()),
            (200, "text/event-stream"),
            "{entries:?}: {body}"
        );
    }
    let (s, _, body) = answer(get(&["anything/*", "x"], &all)).await;
    assert_eq!(s, 200, "{body}");

    // Outside: the first refused entry is named, in the order given, not a later one.
    let (s, kind, body) = answer(get(&["team", "docs/*", "other", "users/1"], &users)).await;
    assert_eq!((s, kind.as_str()), (403, "application/json"), "{body}");
    let m = message(&body);
    assert!(m.contains("docs/*") && !m.contains("other"), "{m}");
    let (s, _, body) = answer(get(&["users/1", "users/*"], &one_user)).await;
    assert_eq!(
        s, 403,
        "a grant on one channel does not cover a pattern: {body}"
    );
    assert!(message(&body).contains("users/*"), "{body}");
    let (s, _, body) = answer(get(&["status/x", "users/*"], &one_user)).await;
    assert!(s == 403 && message(&body).contains("users/*"), "{s} {body}");
    // A grant `users/*` does not cover a sibling prefix such as `usersx/*`, nor `*` everything.
    for entries in [&["usersx/*"][..], &["users"]] {
        let (s, _, body) = answer(get(entries, &users)).await;
        assert!(
            s == 403 && message(&body).contains(entries[0]),
            "{s} {body}"
        );
    }
    // The browser's way to send the token: the same decision.
    let (s, _, body) = answer(c.get(hub.url(&format!(
        "{}&access_token={users}",
        many(&["team", "secret"])
    ))))
    .await;
    assert!(s == 403 && message(&body).contains("secret"), "{s} {body}");
    // No token: public entries only; a private one needs a token (401).
    let (s, _, _) = answer(c.get(hub.url(&many(&["status/*", "status/a"])))).await;
    assert_eq!(s, 200);
    let (s, _, body) = answer(c.get(hub.url(&many(&["status/*", "team"])))).await;
    assert_eq!(s, 401, "{body}");
    hub.stop().await;
}

#[tokio::test]
async fn replay_resets_broadcasts_and_patterns_never_leak_ungranted_channels() {
    let hub = start_jwt().await;
    let c = reqwest::Client::new();
    let publish = |channel: &str, data: &str| {
        let url = if channel.is_empty() {
            hub.url("/events")
        } else {
            hub.url(&format!("/events/{channel}"))
        };
        let req = c.post(url).bearer_auth(TOKEN).form(&[("data", data)]);
        async move {
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.json::<serde_json::Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let start = publish("secret", "s0").await;
    for (ch, data) in [
        ("users/1/a", "ok-1"),
        ("users/2/a", "no-1"),
        ("users/10/a", "no-2"),
        ("team", "ok-2"),
        ("secret", "no-3"),
        ("", "ok-all-1"),
        ("users/1", "no-4"),
        ("users/1/b/c", "ok-3"),
    ] {
        publish(ch, data).await;
    }
    let t = hs256(grant(&["users/1/*", "team"], &[], 60));
    let url = hub.url(&many(&["team", "users/1/*"]));
    // The replay from an id of an ungranted channel; then an id the hub cannot place (`sse-reset`,
    // then every window): both only ever hold granted channels and broadcasts.
    for (last, reset) in [(start.as_str(), false), ("never-issued", true)] {
        let mut sub =
            Reader::from_request(c.get(&url).bearer_auth(&t).header("last-event-id", last)).await;
        let end = format!("end-{reset}");
        for (ch, data) in [
            ("users/2/b", "no-5"),
            ("users/1/new", "ok-4"),
            ("", "ok-all-2"),
            ("secret", "no-6"),
            ("users/10/b", "no-7"),
            ("team", &end),
        ] {
            publish(ch, data).await;
        }
        let mut seen = Vec::new();
        loop {
            let m = sub.message().await.expect("stream ended early");
            if m.event_type == "sse-reset" {
                seen.push("(reset)".to_owned());
                continue;
            }
            if m.data == end {
                break;
            }
            seen.push(m.data.to_string());
        }
        // The first pass's live events are in the window of the second pass's reset.
        let mut want: Vec<&str> = vec!["ok-1", "ok-2", "ok-all-1", "ok-3"];
        if reset {
            want.insert(0, "(reset)");
            want.extend(["ok-4", "ok-all-2", "end-false"]);
        }
        want.extend(["ok-4", "ok-all-2"]);
        assert_eq!(seen, want, "resuming from {last}");
    }
    hub.stop().await;
}

#[tokio::test]
async fn one_anonymous_client_cannot_create_unbounded_channels_or_subscriptions() {
    let hub = security_support::start(
        sse_server::Hub::builder().max_channels(6),
        |s| s,
        Limits::default()
            .max_subscriptions_per_connection(10)
            .max_subscriptions_per_ip(12)
            .retry_after(Duration::from_secs(3)),
    )
    .await;
    let c = reqwest::Client::new();
    let names = |p: &str, n: usize| -> Vec<String> { (0..n).map(|i| format!("{p}{i}")).collect() };
    let get = |entries: &[String]| {
        let refs: Vec<&str> = entries.iter().map(String::as_str).collect();
        c.get(hub.url(&many(&refs)))
    };

    // Each entry counts as a subscription of the connection: 11 entries on one stream are over 10.
    let (s, _, body) = answer(get(&names("c", 11))).await;
    assert_eq!(s, 429, "{body}");
    assert!(
        hub.hub.channels().await.unwrap().is_empty(),
        "a refused stream created channels"
    );
    // A stream of 5 names and 2 patterns: 7 of the address's 12; a second of 6 is over it.
    let mut first = names("a", 5);
    first.extend(["p/*".to_owned(), "q/*".to_owned()]);
    let _held = Reader::from_request(get(&first)).await;
    let (s, _, body) = answer(get(&[names("b", 5), vec!["r/*".into()]].concat())).await;
    assert_eq!(s, 429, "{body}");
    // Channels: 5 exist, the table holds 6; a stream naming 2 new ones is refused whole (503)...
    let (s, _, body) = answer(get(&names("d", 2))).await;
    assert_eq!(s, 503, "{body}");
    // ...and patterns create none, however many.
    let patterns: Vec<String> = (0..4).map(|i| format!("z{i}/*")).collect();
    let _patterns = Reader::from_request(get(&patterns)).await;
    let live = hub.hub.channels().await.unwrap();
    assert!(live.len() <= 6, "{live:?}");
    assert!(live.iter().all(|ch| ch.name.starts_with('a')), "{live:?}");
    hub.stop().await;
}

#[tokio::test]
async fn the_binary_caps_entries_with_max_channels_per_subscription() {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sse-server"));
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--no-demo",
        "--publish-token",
        TOKEN,
    ])
    .args(["--max-channels-per-subscription", "3"])
    .env("RUST_LOG", "warn");
    let (_child, base) = support::spawn_server(cmd, Stdio::null()).await;
    let c = reqwest::Client::new();
    let (s, kind, body) = answer(c.get(format!("{base}{}", many(&["a", "b/*", "c"])))).await;
    assert_eq!((s, kind.as_str()), (200, "text/event-stream"), "{body}");
    let (s, kind, body) = answer(c.get(format!("{base}{}", many(&["a", "b", "c", "d"])))).await;
    assert_eq!((s, kind.as_str()), (400, "application/json"), "{body}");
    assert!(message(&body).contains('3'), "{body}");
    // The default is 64.
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sse-server"));
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--no-demo",
        "--publish-token",
        TOKEN,
    ])
    .env("RUST_LOG", "warn");
    let (_child, base) = support::spawn_server(cmd, Stdio::null()).await;
    let list = |n: usize| -> String {
        let v: Vec<String> = (0..n).map(|i| format!("ch{i}")).collect();
        many(&v.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (s, _, body) = answer(c.get(format!("{base}{}", list(64)))).await;
    assert_eq!(s, 200, "{body}");
    let (s, _, body) = answer(c.get(format!("{base}{}", list(65)))).await;
    assert_eq!(s, 400, "{body}");
    assert!(message(&body).contains("64"), "{body}");
}
