//! CORS with credentials (`--cors-credentials`): the headers on preflights and streams, and a real
//! headless Chromium whose page, on another origin of the same site (another port of 127.0.0.1), puts
//! the subscriber's JWT in the `sse_token` cookie and opens `new EventSource(hub, {withCredentials:
//! true})` on a channel that needs it.
//!
//! Missing Chromium: a loud SKIPPED line, unless `SSE_REQUIRE_BROWSER=1` (CI), which makes it fatal.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const SECRET: &str = "a-long-test-secret-for-hs256-tokens";
const TOKEN: &str = "cors-publish-token";
/// Upper bound for one wait (Chromium starts slowly on a busy machine).
const WAIT: Duration = Duration::from_secs(30);

/// The built `sse-server` with JWT auth, allowing `origins`, plus `extra` flags.
async fn hub(origins: &[&str], extra: &[&str]) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sse-server"));
    cmd.args(["--listen", "127.0.0.1:0", "--no-demo", "--heartbeat", "1"])
        .args(["--publish-token", TOKEN, "--jwt-secret", SECRET])
        .args(extra)
        .env("RUST_LOG", "warn");
    for origin in origins {
        cmd.args(["--cors-origin", origin]);
    }
    support::spawn_server(cmd, Stdio::null()).await
}

/// A subscriber's JWT granting `channel` for an hour.
fn jwt(channel: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sse": {"subscribe": [channel]}, "exp": now + 3600}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// Origins as the hub sees them: `http://127.0.0.1:PORT`.
fn origin_of(base: &str) -> String {
    base.trim_end_matches('/').to_owned()
}

#[tokio::test]
async fn credentials_go_to_origins_listed_by_name_on_preflights_and_streams() {
    let page = "http://127.0.0.1:1";
    let (_with, with) = hub(&[page, "*"], &["--cors-credentials"]).await;
    let (_without, without) = hub(&[page], &[]).await;
    let client = support::client();
    let stream = |base: &str, origin: &str| {
        client
            .get(format!("{base}/events/private"))
            .header("origin", origin)
            .header("cookie", format!("sse_token={}", jwt("private")))
    };
    let preflight = |base: &str, origin: &str| {
        client
            .request(reqwest::Method::OPTIONS, format!("{base}/events/private"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "last-event-id")
    };

    for req in [stream(&with, page), preflight(&with, page)] {
        let resp = req.send().await.unwrap();
        assert!(resp.status().is_success(), "{resp:?}");
        let h = resp.headers();
        assert_eq!(h["access-control-allow-origin"], page);
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert!(
            h.get_all("vary").iter().any(|v| v == "Origin"),
            "Vary: Origin is missing: {h:?}"
        );
    }
    // Let in by `*` only, or without the flag: no credentials.
    for (base, origin) in [(&with, "http://elsewhere.example"), (&without, page)] {
        for req in [stream(base, origin), preflight(base, origin)] {
            let resp = req.send().await.unwrap();
            let h = resp.headers();
            assert_eq!(h["access-control-allow-origin"], origin);
            assert!(
                h.get("access-control-allow-credentials").is_none(),
                "{origin} on {base}: {h:?}"
            );
        }
    }
    // Never `*` with credentials.
    let resp = stream(&with, page).send().await.unwrap();
    assert_ne!(resp.headers()["access-control-allow-origin"], "*");
}

/// The page: sets the cookie, subscribes with credentials, reports what happens to `/report`.
fn page_html(hub_url: &str, jwt: &str) -> String {
    format!(
        r#"<!doctype html><meta charset="utf-8"><title>cors credentials</title>
<script>
const report = (r) => fetch("/report", {{method: "POST", body: JSON.stringify(r)}});
document.cookie = "sse_token={jwt}; path=/";
const es = new EventSource("{hub_url}", {{withCredentials: true}});
es.onopen = () => report({{kind: "open", withCredentials: es.withCredentials}});
es.onmessage = (e) => report({{kind: "message", data: e.data, lastEventId: e.lastEventId}});
es.onerror = () => {{ report({{kind: "error", readyState: es.readyState}}); es.close(); }};
</script>"#
    )
}

/// A page server on its own port (another origin of the same site as the hub): `GET /page` serves the
/// page for `hub_url`, `POST /report` collects its reports.
struct PageServer {
    origin: String,
    listener: Option<tokio::net::TcpListener>,
    reports: mpsc::UnboundedReceiver<Value>,
    sender: mpsc::UnboundedSender<Value>,
}

impl PageServer {
    async fn bind() -> PageServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let (sender, reports) = mpsc::unbounded_channel();
        PageServer {
            origin,
            listener: Some(listener),
            reports,
            sender,
        }
    }

    fn serve(&mut self, html: String) {
        let app = Router::new()
            .route("/page", get(move || async move { Html(html) }))
            .route(
                "/report",
                post(
                    |State(tx): State<mpsc::UnboundedSender<Value>>, body: String| async move {
                        let _ = tx.send(serde_json::from_str(&body).unwrap_or(Value::Null));
                    },
                ),
            )
            .with_state(self.sender.clone());
        let listener = self.listener.take().expect("served once");
        tokio::spawn(async move { axum::serve(listener, app).await });
    }

    /// The next report whose kind is one of `kinds`.
    async fn next(&mut self, kinds: &[&str]) -> Value {
        tokio::time::timeout(WAIT, async {
            loop {
                let r = self.reports.recv().await.expect("the page server stopped");
                if kinds.iter().any(|k| r["kind"] == *k) {
                    return r;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the page reported none of {kinds:?} in time"))
    }
}

fn chromium() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    let found = [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .iter()
    .find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("SSE_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "chromium is not installed but SSE_REQUIRE_BROWSER=1; run .ci/run's install steps"
        );
        eprintln!(
            "\n*** SKIPPED: chromium not installed (set SSE_REQUIRE_BROWSER=1 to make this fail) ***\n"
        );
    }
    found
}

/// Headless Chromium showing `url` in a fresh profile; its whole process group is killed on drop.
struct Browser {
    child: std::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn open(chromium: &std::path::Path, url: &str) -> Browser {
        use std::os::unix::process::CommandExt;
        let profile = tempfile::tempdir().unwrap();
        let child = std::process::Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--disable-extensions",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        Browser {
            child,
            _profile: profile,
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let pgid = self.child.id();
        if pgid > 1 {
            // `-s KILL -- -PGID`: procps-ng 4.0.2 misreads `kill -KILL -PGID`.
            let _ = std::process::Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{pgid}")])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn publish(base: &str, channel: &str, data: &str) -> String {
    let resp = support::client()
        .post(format!("{base}/events/{channel}"))
        .bearer_auth(TOKEN)
        .form(&[("data", data)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let json: Value = resp.json().await.unwrap();
    json["id"].as_str().unwrap().to_owned()
}

/// Runs the page against a hub started with `extra` flags; returns the page's first `open` or `error`
/// report and, after an `open`, the report of the event then published (its id checked).
async fn page_against_hub(chromium: &std::path::Path, extra: &[&str]) -> Vec<Value> {
    let mut page = PageServer::bind().await;
    let (_hub, base) = hub(&[&page.origin.clone()], extra).await;
    let hub_origin = origin_of(&base);
    assert_ne!(
        hub_origin, page.origin,
        "the page must be on another origin"
    );
    page.serve(page_html(
        &format!("{base}/events/private"),
        &jwt("private"),
    ));
    let _browser = Browser::open(chromium, &format!("{}/page", page.origin));
    let first = page.next(&["open", "error"]).await;
    if first["kind"] != "open" {
        return vec![first];
    }
    let id = publish(&base, "private", "with the cookie").await;
    let mut message = page.next(&["message", "error"]).await;
    assert_eq!(message["lastEventId"], id.as_str(), "{message}");
    message["lastEventId"] = "(the published id)".into();
    vec![first, message]
}

#[tokio::test]
async fn chromium_on_another_origin_subscribes_with_its_cookie_only_with_cors_credentials() {
    let Some(chromium) = chromium() else { return };
    let seen = page_against_hub(&chromium, &["--cors-credentials"]).await;
    assert_eq!(
        seen,
        vec![
            json!({"kind": "open", "withCredentials": true}),
            json!({"kind": "message", "data": "with the cookie", "lastEventId": "(the published id)"}),
        ],
        "with --cors-credentials the page's credentialed EventSource must open and receive"
    );
    let seen = page_against_hub(&chromium, &[]).await;
    assert_eq!(
        seen,
        vec![json!({"kind": "error", "readyState": 2})],
        "without --cors-credentials the browser must refuse the credentialed stream"
    );
}
