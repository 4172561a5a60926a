//! Shared pieces of the browser, peer and contract suites: a real `sse-server` hub served in-process
//! next to test-only routes (a page, a collector the page reports to, raw scripted endpoints), a
//! headless Chromium that is always killed, and the "skip loudly unless required" rule for tools.
#![allow(dead_code)] // each test binary uses its own subset

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;
use sse_server::{Body, Hub, HubBuilder, HubService, Server};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub const TOKEN: &str = "peers-token";
/// Upper bound for any single wait on the network or on a peer process.
pub const WAIT: Duration = Duration::from_secs(30);

/// Where the node/python peers and the browser pages live.
pub fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers")
}

/// The first of `names` found on `PATH`.
pub fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// `true` when the tool is usable. When it is not: panics if `require_env=1` (CI), otherwise prints a
/// loud SKIPPED line (also recorded for `cargo xtask conformance`) and returns `false`.
pub fn available(what: &str, found: bool, require_env: &str) -> bool {
    if found {
        return true;
    }
    if std::env::var(require_env).as_deref() == Ok("1") {
        panic!("{what} is not installed but {require_env}=1; run .ci/run's install steps");
    }
    eprintln!("\n*** SKIPPED: {what} not installed (set {require_env}=1 to make this fail) ***\n");
    println!("SKIPPED: {what} not installed");
    false
}

/// A raw route answered synchronously from the request head (scripted endpoints).
pub type Extra = Arc<dyn Fn(&http::request::Parts) -> Option<Response<Body>> + Send + Sync>;

/// One subscription the hub saw, with the `Last-Event-ID` it resumed from.
#[derive(Debug, Clone)]
pub struct Subscribed {
    pub channel: String,
    pub last_event_id: Option<String>,
    pub at: Instant,
}

/// A hub (the real `sse_server::HubService` behind the real `sse_server::Server`) plus test routes:
/// `GET /page/{name}` (an HTML page running `peers/browser/{name}.js`), `POST /collect` (JSON reports
/// from the page) and any [`Extra`] routes, all on one origin.
pub struct Harness {
    pub base: String,
    pub addr: SocketAddr,
    pub hub: Hub,
    pub subscribes: Arc<Mutex<Vec<Subscribed>>>,
    reports: mpsc::UnboundedReceiver<Value>,
    seen: Vec<Value>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), sse_server::Error>>>,
    _tls_dir: Option<TempDir>,
}

#[derive(Default)]
pub struct HarnessBuilder {
    hub: Option<HubBuilder>,
    tls: bool,
    extra: Option<Extra>,
}

impl HarnessBuilder {
    pub fn hub(mut self, hub: HubBuilder) -> Self {
        self.hub = Some(hub);
        self
    }
    /// Serve HTTPS with a self-signed certificate generated now (HTTP/2 through ALPN).
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }
    pub fn extra(mut self, extra: Extra) -> Self {
        self.extra = Some(extra);
        self
    }

    pub async fn start(self) -> Harness {
        let subscribes = Arc::new(Mutex::new(Vec::new()));
        let record = subscribes.clone();
        let hub = self
            .hub
            .unwrap_or_else(|| Hub::builder().heartbeat(None))
            .on_subscribe(move |info| {
                record.lock().unwrap().push(Subscribed {
                    channel: info.channel.to_owned(),
                    last_event_id: info.last_event_id.map(str::to_owned),
                    at: Instant::now(),
                });
                Ok(None)
            })
            .build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (report_tx, reports) = mpsc::unbounded_channel();
        let hub_service = HubService::new(hub.clone()).publish_token(TOKEN);
        let extra = self.extra.clone();
        let service = tower::service_fn(move |req: Request<Incoming>| {
            let hub_service = hub_service.clone();
            let extra = extra.clone();
            let report_tx = report_tx.clone();
            async move { Ok::<_, Infallible>(route(req, hub_service, extra, report_tx).await) }
        });
        let mut server = Server::new(hub.clone()).grace_period(Duration::from_secs(1));
        let mut tls_dir = None;
        let scheme = if self.tls {
            let dir = TempDir::new("tls");
            let cert = rcgen::generate_simple_self_signed(vec![
                "127.0.0.1".to_owned(),
                "localhost".to_owned(),
            ])
            .unwrap();
            std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
            std::fs::write(dir.path().join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
            let acceptor =
                sse_server::tls_acceptor(dir.path().join("cert.pem"), dir.path().join("key.pem"))
                    .unwrap();
            server = server.tls(acceptor);
            tls_dir = Some(dir);
            "https"
        } else {
            "http"
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, service, async move {
            let _ = stopped.await;
        }));
        Harness {
            base: format!("{scheme}://{addr}"),
            addr,
            hub,
            subscribes,
            reports,
            seen: Vec::new(),
            stop: Some(stop),
            task: Some(task),
            _tls_dir: tls_dir,
        }
    }
}

async fn route(
    req: Request<Incoming>,
    hub_service: HubService,
    extra: Option<Extra>,
    report_tx: mpsc::UnboundedSender<Value>,
) -> Response<Body> {
    use tower::ServiceExt;
    let path = req.uri().path().to_owned();
    if HubService::handles(&path) {
        return match hub_service.oneshot(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        };
    }
    let (parts, body) = req.into_parts();
    if let Some(extra) = &extra
        && let Some(resp) = extra(&parts)
    {
        return resp;
    }
    if path == "/collect" && parts.method == http::Method::POST {
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => {
                let _ = report_tx.send(v);
            }
            Err(e) => {
                let _ = report_tx
                    .send(serde_json::json!({"kind": "bad-report", "error": e.to_string()}));
            }
        }
        return status(StatusCode::NO_CONTENT);
    }
    if let Some(name) = path.strip_prefix("/page/") {
        let script = peers_dir().join("browser").join(format!("{name}.js"));
        let (Ok(common), Ok(js)) = (
            std::fs::read_to_string(peers_dir().join("browser/common.js")),
            std::fs::read_to_string(&script),
        ) else {
            return status(StatusCode::NOT_FOUND);
        };
        let html = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{name}</title></head>\
             <body><script>\n{common}\n</script><script>\n{js}\n</script></body></html>"
        );
        let mut resp = Response::new(Body::full(html));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/html; charset=utf-8"),
        );
        return resp;
    }
    if path == "/favicon.ico" {
        return status(StatusCode::NO_CONTENT);
    }
    status(StatusCode::NOT_FOUND)
}

pub fn status(code: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = code;
    resp
}

/// A complete `text/event-stream` response with exactly `bytes` as its body.
pub fn event_stream(bytes: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Body::full(bytes.into()));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    resp
}

impl Harness {
    pub fn builder() -> HarnessBuilder {
        HarnessBuilder::default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Publishes over HTTP (`POST /events/{channel}`, JSON body) and returns the id the hub answered.
    pub async fn publish(&self, channel: &str, body: Value) -> String {
        let resp = tokio::time::timeout(
            WAIT,
            http_client()
                .post(self.url(&format!("/events/{channel}")))
                .bearer_auth(TOKEN)
                .json(&body)
                .send(),
        )
        .await
        .expect("publish timed out")
        .unwrap();
        assert_eq!(resp.status(), 200, "publish failed");
        let json: Value = resp.json().await.unwrap();
        json["id"].as_str().unwrap().to_owned()
    }

    /// Ends every stream of `channel` through the hub's HTTP API (`DELETE /events/{channel}`).
    pub async fn close_channel(&self, channel: &str) {
        let resp = tokio::time::timeout(
            WAIT,
            http_client()
                .delete(self.url(&format!("/events/{channel}")))
                .bearer_auth(TOKEN)
                .send(),
        )
        .await
        .expect("close timed out")
        .unwrap();
        assert!(
            resp.status().is_success(),
            "close failed: {}",
            resp.status()
        );
    }

    /// Reports from the page, in arrival order, up to and including the first one matching `done`
    /// (panics after `wait`, showing everything seen).
    pub async fn reports_until(
        &mut self,
        wait: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut out = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.reports.recv()).await {
                Ok(Some(v)) => {
                    self.seen.push(v.clone());
                    let stop = done(&v);
                    out.push(v);
                    if stop {
                        return out;
                    }
                }
                Ok(None) => panic!("collector closed; seen so far: {:#?}", self.seen),
                Err(_) => panic!(
                    "no matching report from the page within {wait:?}; seen so far: {:#?}",
                    self.seen
                ),
            }
        }
    }

    /// Reports that arrive within `wait` (for "nothing more happens" checks).
    pub async fn reports_within(&mut self, wait: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut out = Vec::new();
        while let Ok(Some(v)) = tokio::time::timeout_at(deadline, self.reports.recv()).await {
            self.seen.push(v.clone());
            out.push(v);
        }
        out
    }

    pub fn subscriptions(&self) -> Vec<Subscribed> {
        self.subscribes.lock().unwrap().clone()
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(WAIT, task).await;
        }
    }
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
}

pub fn is_kind(kind: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["kind"] == kind
}

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "sse-peers-{tag}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process in its own process group; dropping it kills the whole group (Chromium's zygote and
/// renderers, uvicorn's workers) and reaps it.
pub struct Group {
    pub child: std::process::Child,
}

impl Group {
    pub fn spawn(mut cmd: std::process::Command) -> Group {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        Group {
            child: cmd.spawn().unwrap(),
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let pgid = self.child.id();
        // `-s KILL -- -PGID`: procps-ng 4.0.2 turns `kill -KILL -PGID` into kill(-2, SIGKILL), which
        // would hit an unrelated process group.
        if pgid > 1 {
            let _ = std::process::Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{pgid}")])
                .stderr(std::process::Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Headless Chromium showing one URL until dropped.
pub struct Browser {
    _group: Group,
    _profile: TempDir,
    _permit: tokio::sync::SemaphorePermit<'static>,
}

/// At most this many browsers at once per test binary: each is several processes, and CI has 2 cores.
static BROWSERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(3);

pub fn chromium() -> Option<PathBuf> {
    find_program(&[
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ])
}

impl Browser {
    pub async fn open(chromium: &Path, url: &str) -> Browser {
        let permit = tokio::time::timeout(Duration::from_secs(120), BROWSERS.acquire())
            .await
            .expect("no browser slot within 120 s")
            .unwrap();
        let profile = TempDir::new("chromium");
        let mut cmd = std::process::Command::new(chromium);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--disable-extensions",
            "--ignore-certificate-errors",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        Browser {
            _group: Group::spawn(cmd),
            _profile: profile,
            _permit: permit,
        }
    }
}
