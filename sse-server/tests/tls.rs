//! HTTPS with rustls: the binary and the library serve events over TLS, HTTP/1.1 and HTTP/2 (ALPN).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use std::time::Duration;

use sse_server::{Hub, HubService, Server};
use support::{Reader, TOKEN, WAIT};

const CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-cert.pem");
const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-key.pem");

fn tls_client(http2: bool) -> reqwest::Client {
    let cert = reqwest::Certificate::from_pem(&std::fs::read(CERT).unwrap()).unwrap();
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(cert);
    if http2 {
        builder = builder.http2_prior_knowledge();
    } else {
        builder = builder.http1_only();
    }
    builder.build().unwrap()
}

/// Serves a hub over TLS with `limits` on a free port; the closure stops it and checks it ended well.
async fn start(limits: sse_server::Limits) -> (u16, impl AsyncFnOnce()) {
    let hub = Hub::builder().build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = Server::new(hub.clone())
        .tls(sse_server::tls_acceptor(CERT, KEY).unwrap())
        .limits(limits)
        .grace_period(Duration::from_secs(2));
    let task = tokio::spawn(server.serve(
        listener,
        HubService::new(hub).publish_token(TOKEN),
        async move {
            let _ = stopped.await;
        },
    ));
    let stop = async move || {
        let _ = stop.send(());
        tokio::time::timeout(WAIT, task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    };
    (port, stop)
}

#[tokio::test]
async fn events_flow_over_tls_with_http1_and_http2() {
    let (port, stop) = start(sse_server::Limits::default()).await;
    let url = format!("https://localhost:{port}/events/secure");
    let mut h1 = Reader::open(&tls_client(false), &url, None).await;
    let mut h2 = Reader::open(&tls_client(true), &url, None).await;
    assert_eq!(h1.version, reqwest::Version::HTTP_11);
    assert_eq!(h2.version, reqwest::Version::HTTP_2);
    let resp = tls_client(false)
        .post(&url)
        .bearer_auth(TOKEN)
        .form(&[("data", "sealed")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(h1.message().await.unwrap().data, "sealed");
    assert_eq!(h2.message().await.unwrap().data, "sealed");
    // Plain HTTP on the TLS port is not served.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    stop().await;
}

#[test]
fn unreadable_key_is_a_clear_error() {
    let Err(err) = sse_server::tls_acceptor(CERT, CERT) else {
        panic!("a certificate is not a key")
    };
    assert!(err.to_string().contains("private key"), "{err}");
    let Err(err) = sse_server::tls_acceptor("/nonexistent/cert.pem", KEY) else {
        panic!("missing file accepted")
    };
    assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
}

/// A connection over a limit on a TLS listener is answered over TLS (a plaintext 429 would read as
/// a broken handshake): HTTP/1.1 and HTTP/2 clients both get the 429 with its message.
#[tokio::test]
async fn over_the_limit_a_tls_client_reads_a_real_429() {
    let (port, stop) = start(sse_server::Limits::default().max_connections_per_ip(1)).await;
    let url = format!("https://localhost:{port}/events/limited");
    let _held = Reader::open(&tls_client(false), &url, None).await;
    for http2 in [false, true] {
        let resp = tls_client(http2)
            .get(format!("https://localhost:{port}/healthz"))
            .send()
            .await
            .expect("the refusal must be a TLS answer, not plaintext on a TLS port");
        assert_eq!(resp.status(), 429, "http2: {http2}");
        assert!(resp.headers().contains_key("retry-after"));
        let body = resp.text().await.unwrap();
        assert!(
            body.contains("too many connections from your address"),
            "{body}"
        );
    }
    stop().await;
}
