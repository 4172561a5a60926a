//! Helpers of the security tests: a hub served with authorization and limits, JWT minting, raw sockets.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sse_server::{HubBuilder, HubService, Limits, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const TOKEN: &str = "static-publish-token";
pub const SECRET: &str = "security-tests-hs256-secret-0123456789";
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Hub {
    pub addr: SocketAddr,
    pub hub: sse_server::Hub,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), sse_server::Error>>>,
}

impl Hub {
    /// Serves `builder`'s hub; `service` adds authorization to the service (the static token is set).
    pub async fn start(
        builder: HubBuilder,
        service: impl FnOnce(HubService) -> HubService,
        limits: Limits,
    ) -> Hub {
        let hub = builder.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let svc = service(HubService::new(hub.clone()).publish_token(TOKEN));
        let server = Server::new(hub.clone())
            .grace_period(Duration::from_secs(1))
            .limits(limits);
        let task = tokio::spawn(server.serve(listener, svc, async move {
            let _ = stopped.await;
        }));
        Hub {
            addr,
            hub,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("server did not stop in time")
                .unwrap()
                .unwrap();
        }
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 token signed with [`SECRET`].
pub fn hs256(claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// Claims granting `subscribe` and `publish`, valid for `secs` more seconds.
pub fn grant(subscribe: &[&str], publish: &[&str], secs: u64) -> serde_json::Value {
    serde_json::json!({
        "sub": "test",
        "exp": now() + secs,
        "sse": {"subscribe": subscribe, "publish": publish},
    })
}

/// Sends raw bytes on a fresh connection and returns everything the server wrote until it closed the
/// connection (or `wait` passed).
pub async fn raw(addr: SocketAddr, request: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The server may close before reading everything (e.g. after a 431); that is its answer.
    let _ = s.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw HTTP/1.1 response.
pub fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"))
}
