//! Helpers of the security tests: a hub served with authorization and limits, JWT minting, raw sockets.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sse_server::{HubBuilder, HubService, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use crate::support::{TOKEN, TestServer as Hub, WAIT};
pub const SECRET: &str = "security-tests-hs256-secret-0123456789";

/// Serves `builder`'s hub; `service` adds authorization to the service (the static token is set).
pub async fn start(
    builder: HubBuilder,
    service: impl FnOnce(HubService) -> HubService,
    limits: Limits,
) -> Hub {
    Hub::start_with(builder, service, |server| server.limits(limits)).await
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

/// Reads an HTTP/1.1 response head (through the blank line), bounded by [`WAIT`].
pub async fn read_head(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    tokio::time::timeout(WAIT, async {
        while !buf.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            buf.push(byte[0]);
        }
    })
    .await
    .expect("no response head in time");
    String::from_utf8_lossy(&buf).into_owned()
}
