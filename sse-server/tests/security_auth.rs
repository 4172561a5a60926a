//! Authorization: JWT statuses (401/403), token sources, public channels, no leak through broadcast or
//! replay, RS256/ES256, the binary's flags, and expiry ending a stream that sse-client resumes losslessly.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod security_support;
mod support;

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use security_support::{Hub, SECRET, TOKEN, WAIT, grant, hs256, now};
use sse_server::{Auth, JwtKey, Limits};
use support::Reader;
use tokio::process::{Child, Command};

fn hs_auth() -> Auth {
    Auth::builder()
        .key(JwtKey::hs256(SECRET))
        .public_channel("news")
        .public_channel("status/*")
        .build()
}

async fn start_hs() -> Hub {
    security_support::start(
        sse_server::Hub::builder(),
        |s| s.authorization(hs_auth()),
        Limits::default(),
    )
    .await
}

/// Status and JSON error of a request whose response is not kept open.
async fn status(req: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, String) {
    let resp = tokio::time::timeout(WAIT, req.send())
        .await
        .expect("request timed out")
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    if status == 200
        && headers
            .get("content-type")
            .is_some_and(|v| v == "text/event-stream")
    {
        return (status, headers, String::new());
    }
    let body = tokio::time::timeout(WAIT, resp.text())
        .await
        .unwrap()
        .unwrap();
    (status, headers, body)
}

#[tokio::test]
async fn jwt_statuses_token_sources_patterns_and_public_channels() {
    let hub = start_hs().await;
    let c = reqwest::Client::new();
    let get = |path: &str| c.get(hub.url(path));

    // 401: missing, garbage, wrong signature, expired, no exp.
    let (s, h, body) = status(get("/events/private")).await;
    assert_eq!(s, 401);
    assert_eq!(h["www-authenticate"], "Bearer");
    assert!(body.contains("needs a token"), "{body}");
    let (s, _, body) = status(get("/events/private").bearer_auth("not.a.jwt")).await;
    assert_eq!((s, body.contains("not a valid JWT")), (401, true), "{body}");
    let foreign = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &grant(&["*"], &[], 60),
        &jsonwebtoken::EncodingKey::from_secret(b"someone else's secret"),
    )
    .unwrap();
    let (s, _, body) = status(get("/events/private").bearer_auth(&foreign)).await;
    assert_eq!((s, body.contains("signature")), (401, true), "{body}");
    let mut expired = grant(&["*"], &[], 0);
    expired["exp"] = (now() - 5).into();
    let (s, _, body) = status(get("/events/private").bearer_auth(hs256(expired))).await;
    assert_eq!((s, body.contains("expired")), (401, true), "{body}");
    let no_exp = hs256(serde_json::json!({"sse": {"subscribe": ["*"]}}));
    let (s, _, body) = status(get("/events/private").bearer_auth(&no_exp)).await;
    assert_eq!((s, body.contains("\\\"exp\\\"")), (401, true), "{body}");

    // 200 from each token source; 403 for a channel the token does not grant.
    let t = hs256(grant(&["private", "users/42/*"], &[], 60));
    for req in [
        get("/events/private").bearer_auth(&t),
        get("/events/private").header("cookie", format!("theme=dark; sse_token={t}")),
        get(&format!("/events/private?lastEventId=&access_token={t}")),
        get("/events/users/42/inbox").bearer_auth(&t),
        get("/events/users/42/a/b").bearer_auth(&t),
    ] {
        assert_eq!(status(req).await.0, 200);
    }
    for path in ["/events/other", "/events/users/42", "/events/users/420/x"] {
        let (s, _, body) = status(get(path).bearer_auth(&t)).await;
        assert_eq!(s, 403, "{path}");
        assert!(body.contains("sse.subscribe"), "{body}");
    }
    // Public channels need no token.
    for path in ["/events/news", "/events/status/db"] {
        assert_eq!(status(get(path)).await.0, 200, "{path}");
    }

    // Publishing: the token's publish claim, the static token, 401 without any, 403 outside the grant.
    let post = |path: &str| {
        c.post(hub.url(path))
            .header("content-type", "text/plain")
            .body("x")
    };
    let publisher = hs256(grant(&[], &["private", "users/*"], 60));
    let everywhere = hs256(grant(&[], &["*"], 60));
    assert_eq!(
        status(post("/events/private").bearer_auth(&publisher))
            .await
            .0,
        200
    );
    assert_eq!(
        status(post("/events/users/9").bearer_auth(&publisher))
            .await
            .0,
        200
    );
    assert_eq!(
        status(post("/events/news").bearer_auth(&publisher)).await.0,
        403
    );
    assert_eq!(status(post("/events/private").bearer_auth(&t)).await.0, 403);
    assert_eq!(status(post("/events/private")).await.0, 401);
    assert_eq!(
        status(post("/events/private").bearer_auth("nope")).await.0,
        401
    );
    assert_eq!(status(post("/events/news").bearer_auth(TOKEN)).await.0, 200);
    // A publish token in a cookie does not publish (CSRF).
    let (s, _, _) =
        status(post("/events/private").header("cookie", format!("sse_token={publisher}"))).await;
    assert_eq!(s, 401);
    // Broadcast needs "*"; closing a channel needs publishing rights on it.
    let (s, _, body) = status(post("/events").bearer_auth(&publisher)).await;
    assert_eq!((s, body.contains("\\\"*\\\"")), (403, true), "{body}");
    assert_eq!(
        status(post("/events").bearer_auth(&everywhere)).await.0,
        200
    );
    assert_eq!(
        status(c.delete(hub.url("/events/private")).bearer_auth(&t))
            .await
            .0,
        403
    );
    assert_eq!(
        status(c.delete(hub.url("/events/private")).bearer_auth(&publisher))
            .await
            .0,
        200
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_subscriber_never_receives_events_of_channels_its_token_does_not_grant() {
    let hub = start_hs().await;
    let c = reqwest::Client::new();
    let publish = |channel: &'static str, data: &'static str| {
        let req = c
            .post(hub.url(&format!("/events/{channel}")))
            .bearer_auth(TOKEN)
            .form(&[("data", data)]);
        async move {
            let resp = tokio::time::timeout(WAIT, req.send())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.json::<serde_json::Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    publish("a", "a1").await;
    let b1 = publish("b", "b1").await;
    publish("b", "b2").await;
    publish("a", "a2").await;

    let t = hs256(grant(&["a"], &[], 60));
    // Resuming on `b` with a granted token for `a` only: 403 before any byte of replay.
    let (s, h, body) = status(
        c.get(hub.url("/events/b"))
            .bearer_auth(&t)
            .header("last-event-id", &b1),
    )
    .await;
    assert_eq!(s, 403);
    assert_eq!(h["content-type"], "application/json");
    assert!(!body.contains("b2"), "{body}");
    // Same through the query parameters a browser would use.
    let (s, _, _) =
        status(c.get(hub.url(&format!("/events/b?lastEventId={b1}&access_token={t}")))).await;
    assert_eq!(s, 403);

    // On `a`, resuming from an id of `b` replays only `a`'s events; broadcasts arrive; `b` never does.
    let mut sub = Reader::from_request(
        c.get(hub.url("/events/a"))
            .bearer_auth(&t)
            .header("last-event-id", &b1),
    )
    .await;
    publish("b", "b3").await;
    let id = {
        let resp = c
            .post(hub.url("/events"))
            .bearer_auth(TOKEN)
            .form(&[("data", "to-all")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json::<serde_json::Value>().await.unwrap()["id"].clone()
    };
    publish("b", "b4").await;
    publish("a", "a3").await;
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("a3") {
        let m = sub.message().await.expect("stream ended early");
        if m.event_type == "message" {
            seen.push(m.data.to_string());
        }
    }
    assert!(seen.iter().all(|d| !d.starts_with('b')), "{seen:?}");
    assert!(seen.contains(&"to-all".to_owned()), "{seen:?} {id}");
    assert_eq!(seen.last().unwrap(), "a3");
    hub.stop().await;
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[tokio::test]
async fn rs256_and_es256_tokens_verify_and_algorithm_confusion_is_refused() {
    for (alg, key, private) in [
        (
            jsonwebtoken::Algorithm::RS256,
            JwtKey::rs256_pem(&fixture("jwt-rs256-public.pem")).unwrap(),
            jsonwebtoken::EncodingKey::from_rsa_pem(&fixture("jwt-rs256-private.pem")).unwrap(),
        ),
        (
            jsonwebtoken::Algorithm::ES256,
            JwtKey::es256_pem(&fixture("jwt-es256-public.pem")).unwrap(),
            jsonwebtoken::EncodingKey::from_ec_pem(&fixture("jwt-es256-private.pem")).unwrap(),
        ),
    ] {
        let hub = security_support::start(
            sse_server::Hub::builder(),
            move |s| s.authorization(Auth::builder().key(key).build()),
            Limits::default(),
        )
        .await;
        let c = reqwest::Client::new();
        let good = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(alg),
            &grant(&["x"], &["x"], 60),
            &private,
        )
        .unwrap();
        assert_eq!(
            status(c.get(hub.url("/events/x")).bearer_auth(&good))
                .await
                .0,
            200,
            "{alg:?}"
        );
        let publish = c
            .post(hub.url("/events/x"))
            .bearer_auth(&good)
            .header("content-type", "text/plain")
            .body("signed");
        assert_eq!(status(publish).await.0, 200, "{alg:?}");
        // HS256 "signed" with the public key as the secret: the classic confusion attack.
        let public = if alg == jsonwebtoken::Algorithm::RS256 {
            fixture("jwt-rs256-public.pem")
        } else {
            fixture("jwt-es256-public.pem")
        };
        let forged = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &grant(&["x"], &[], 60),
            &jsonwebtoken::EncodingKey::from_secret(&public),
        )
        .unwrap();
        let (s, _, body) = status(c.get(hub.url("/events/x")).bearer_auth(&forged)).await;
        assert_eq!(s, 401, "{alg:?}");
        assert!(body.contains("algorithm"), "{body}");
        hub.stop().await;
    }
}

async fn spawn_binary(args: &[&str]) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sse-server"));
    cmd.args(args).args([
        "--listen",
        "127.0.0.1:0",
        "--no-demo",
        "--publish-token",
        TOKEN,
    ]);
    support::spawn_server(cmd, Stdio::null()).await
}

#[tokio::test]
async fn binary_flags_turn_on_jwt_and_public_channels() {
    let c = reqwest::Client::new();
    let (mut child, base) =
        spawn_binary(&["--jwt-secret", SECRET, "--public-channel", "lobby,open/*"]).await;
    let t = hs256(grant(&["mine"], &[], 60));
    assert_eq!(status(c.get(format!("{base}/events/lobby"))).await.0, 200);
    assert_eq!(status(c.get(format!("{base}/events/open/1"))).await.0, 200);
    assert_eq!(status(c.get(format!("{base}/events/mine"))).await.0, 401);
    assert_eq!(
        status(c.get(format!("{base}/events/mine")).bearer_auth(&t))
            .await
            .0,
        200
    );
    assert_eq!(
        status(c.get(format!("{base}/events/theirs")).bearer_auth(&t))
            .await
            .0,
        403
    );
    child.kill().await.unwrap();

    let key = format!(
        "{}/tests/fixtures/jwt-es256-public.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    let (mut child, base) =
        spawn_binary(&["--jwt-public-key", &key, "--jwt-algorithm", "es256"]).await;
    let private =
        jsonwebtoken::EncodingKey::from_ec_pem(&fixture("jwt-es256-private.pem")).unwrap();
    let t = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &grant(&["mine"], &[], 60),
        &private,
    )
    .unwrap();
    assert_eq!(
        status(c.get(format!("{base}/events/mine")).bearer_auth(&t))
            .await
            .0,
        200
    );
    assert_eq!(
        status(
            c.get(format!("{base}/events/mine"))
                .bearer_auth(hs256(grant(&["mine"], &[], 60)))
        )
        .await
        .0,
        401
    );
    child.kill().await.unwrap();

    // A key file that is not PEM stops the binary at start-up with a message naming the flag's input.
    let out = Command::new(env!("CARGO_BIN_EXE_sse-server"))
        .args(["--listen", "127.0.0.1:0", "--no-demo", "--jwt-public-key"])
        .arg(format!("{}/Cargo.toml", env!("CARGO_MANIFEST_DIR")))
        .output();
    let out = tokio::time::timeout(WAIT, out).await.unwrap().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PEM"));
}

#[tokio::test]
async fn an_expiring_token_ends_the_stream_with_an_in_band_sse_expired_event() {
    let hub = start_hs().await;
    let c = reqwest::Client::new();
    let t = hs256(grant(&["feed"], &[], 2));
    let mut sub = Reader::from_request(c.get(hub.url("/events/feed")).bearer_auth(&t)).await;
    hub.hub
        .publish("feed", sse_proto::Event::message("before expiry"))
        .await
        .unwrap();
    assert_eq!(sub.message().await.unwrap().data, "before expiry");
    let last = sub.message().await.expect("no sse-expired before the end");
    assert_eq!(last.event_type, sse_server::EXPIRED_EVENT);
    let data: serde_json::Value = serde_json::from_str(&last.data).unwrap();
    assert_eq!(data["reason"], "token expired");
    assert!(data["exp"].as_u64().is_some());
    // The expiry event carries no id: the client resumes from the last real event.
    assert!(!last.last_event_id.is_empty());
    assert!(
        sub.message().await.is_none(),
        "the stream must end after sse-expired"
    );
    // Reconnecting with the same token is refused.
    assert_eq!(
        status(c.get(hub.url("/events/feed")).bearer_auth(&t))
            .await
            .0,
        401
    );
    hub.stop().await;
}

#[tokio::test]
async fn sse_client_refreshes_its_token_and_resumes_with_nothing_lost() {
    let hub = security_support::start(
        sse_server::Hub::builder().retry(Some(Duration::from_millis(50))),
        |s| s.authorization(hs_auth()),
        Limits::default(),
    )
    .await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let mut source = sse_client::EventSource::builder(hub.url("/events/orders"))
        .credentials(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            // Each token lives 1-2 s: the stream expires at least once while events flow.
            let token = hs256(grant(&["orders"], &[], 2));
            async move {
                let mut headers = sse_client::reqwest::header::HeaderMap::new();
                headers.insert(
                    sse_client::reqwest::header::AUTHORIZATION,
                    format!("Bearer {token}").parse().unwrap(),
                );
                Ok(headers)
            }
        })
        .build()
        .unwrap();
    // Wait for the first connection before publishing, so every event is after the client's start.
    let opened = tokio::time::timeout(WAIT, source.next()).await.unwrap();
    assert!(matches!(opened, Some(Ok(sse_client::Event::Open))));

    const N: usize = 35;
    let publisher = hub.hub.clone();
    let publishing = tokio::spawn(async move {
        for i in 0..N {
            publisher
                .publish("orders", sse_proto::Event::message(i.to_string()))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut got = Vec::new();
    let mut expired = 0;
    let collect = async {
        while got.len() < N {
            match source.next().await {
                Some(Ok(sse_client::Event::Message(m))) if m.event_type == "message" => {
                    got.push(m.data.parse::<usize>().unwrap())
                }
                Some(Ok(sse_client::Event::Message(m))) => {
                    assert_eq!(m.event_type, sse_server::EXPIRED_EVENT);
                    expired += 1;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => assert!(e.will_retry(), "fatal: {e}"),
                None => panic!("source ended"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), collect)
        .await
        .expect("did not receive every event in time");
    publishing.await.unwrap();
    assert_eq!(
        got,
        (0..N).collect::<Vec<_>>(),
        "lost, duplicated or reordered events"
    );
    assert!(expired >= 1, "the token never expired during the test");
    assert!(
        calls.load(Ordering::SeqCst) >= 2,
        "credentials were not refreshed"
    );
    hub.stop().await;
}
