//! HTTP/1.1-over-TLS subscribers on the lean path (`transport/sealed.rs`): a real rustls client on
//! real sockets. Events arrive whole, in order and once each, also when the socket is full (a
//! flusher hands the unwritten ciphertext back), and after resuming (also after a client's
//! KeyUpdate, which ends the stream); a client that closes is forgotten; HTTP/2 (ALPN) stays with
//! hyper.
#![cfg(feature = "tls")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use std::sync::Arc;
use std::time::Duration;

use sse_server::{Hub, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use support::WAIT;

const CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-cert.pem");
const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-key.pem");

struct Running {
    hub: Hub,
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), sse_server::Error>>,
}

impl Running {
    async fn start(hub: Hub) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = Server::new(hub.clone())
            .tls(sse_server::tls_acceptor(CERT, KEY).unwrap())
            .grace_period(Duration::from_secs(2));
        let task = tokio::spawn(server.serve_hub(listener, async move {
            let _ = stopped.await;
        }));
        Running {
            hub,
            port,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    async fn subscribers(&self, channel: &str) -> usize {
        let channels = self.hub.channels().await.unwrap();
        channels
            .iter()
            .find(|c| c.name == channel)
            .map_or(0, |c| c.subscribers)
    }

    async fn wait_subscribers(&self, channel: &str, n: usize) {
        tokio::time::timeout(WAIT, async {
            while self.subscribers(channel).await != n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{channel} never had {n} subscribers"));
    }
}

fn connector(alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(CERT).unwrap())
        .unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&tokio_rustls::rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

/// A raw HTTP/1.1-over-TLS subscriber; `recv_buffer` shrinks its socket's receive buffer.
struct Subscriber {
    tls: TlsStream<tokio::net::TcpStream>,
    got: Vec<u8>,
    head: String,
}

impl Subscriber {
    async fn open(
        port: u16,
        path: &str,
        last_event_id: Option<&str>,
        recv_buffer: Option<u32>,
    ) -> Subscriber {
        let socket = TcpSocket::new_v4().unwrap();
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        let tcp = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = connector(&[b"http/1.1"]).connect(name, tcp).await.unwrap();
        let resume = last_event_id.map_or(String::new(), |id| format!("Last-Event-ID: {id}\r\n"));
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{resume}\r\n");
        tls.write_all(req.as_bytes()).await.unwrap();
        tls.flush().await.unwrap();
        let mut sub = Subscriber {
            tls,
            got: Vec::new(),
            head: String::new(),
        };
        sub.read_until(b"\r\n\r\n").await;
        let end = sub.got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        sub.head = String::from_utf8_lossy(&sub.got[..end]).to_ascii_lowercase();
        sub.got.drain(..end);
        sub
    }

    /// The lean path's answer (hyper's keeps the connection open and says nothing of it).
    fn assert_lean(&self) {
        assert!(
            self.head.starts_with("http/1.1 200 ok\r\n"),
            "{}",
            self.head
        );
        assert!(
            self.head.contains("transfer-encoding: chunked"),
            "{}",
            self.head
        );
        assert!(self.head.contains("connection: close"), "{}", self.head);
    }

    async fn read_until(&mut self, needle: &[u8]) {
        let deadline = tokio::time::Instant::now() + WAIT;
        // Only the new bytes (and a needle's length before them) are searched again.
        let mut from = 0;
        while !self.got[from..].windows(needle.len()).any(|w| w == needle) {
            from = self.got.len().saturating_sub(needle.len());
            let mut buf = vec![0u8; 16 * 1024];
            let n = tokio::time::timeout_at(deadline, self.tls.read(&mut buf))
                .await
                .unwrap_or_else(|_| {
                    let data = self.data();
                    panic!(
                        "waited for an event; got {} bytes, {} events, the last {:?}",
                        self.got.len(),
                        data.len(),
                        data.last().map(|d| &d[..d.len().min(8)])
                    )
                })
                .unwrap();
            assert!(n > 0, "closed early");
            self.got.extend_from_slice(&buf[..n]);
        }
    }

    /// The body so far, unchunked; panics on a malformed chunk (a lost or repeated byte).
    fn body(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = &self.got[..];
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {:?}", &rest[..eol]));
            let data = &rest[eol + 2..];
            if data.len() < size + 2 {
                break;
            }
            assert_eq!(&data[size..size + 2], b"\r\n", "a chunk ends with CRLF");
            out.extend_from_slice(&data[..size]);
            rest = &data[size + 2..];
        }
        out
    }

    /// The `data:` of every whole event so far, in order.
    fn data(&self) -> Vec<String> {
        String::from_utf8(self.body())
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(str::to_owned)
            .collect()
    }
}

fn numbered(n: usize, pad: usize) -> Vec<String> {
    (0..n).map(|i| format!("{i} {}", "x".repeat(pad))).collect()
}

#[tokio::test]
async fn many_events_arrive_in_order_and_once_each_over_lean_tls() {
    let server = Running::start(Hub::builder().queue_size(4096).build()).await;
    let mut sub = Subscriber::open(server.port, "/events/many", None, None).await;
    sub.assert_lean();
    server.wait_subscribers("many", 1).await;
    let want = numbered(2000, 40);
    for (i, data) in want.iter().enumerate() {
        server
            .hub
            .publish("many", sse_proto::Event::message(data.clone()))
            .await
            .unwrap();
        if i % 100 == 0 {
            tokio::task::yield_now().await;
        }
    }
    sub.read_until(format!("data: {}\n\n", want[1999]).as_bytes())
        .await;
    assert_eq!(sub.data(), want);
    server.stop().await;
}

#[tokio::test]
async fn a_full_socket_gets_the_rest_of_its_records_then_the_rest_of_the_events() {
    // A client that reads nothing until everything is published: the
    // flushers' writes stop short, and the ciphertext they could not write goes out first later.
    let hub = Hub::builder()
        .queue_size(100_000)
        .max_subscriber_buffer(64 << 20)
        .build();
    let server = Running::start(hub).await;
    let mut sub = Subscriber::open(server.port, "/events/slow", None, None).await;
    sub.assert_lean();
    server.wait_subscribers("slow", 1).await;
    // About 10 MB: more than the kernel's buffers on both ends take before the client reads.
    let want = numbered(400, 24_000);
    for data in &want {
        server
            .hub
            .publish("slow", sse_proto::Event::message(data.clone()))
            .await
            .unwrap();
        tokio::task::yield_now().await;
    }
    sub.read_until(format!("data: {}\n\n", want[399]).as_bytes())
        .await;
    assert_eq!(sub.data(), want);
    assert_eq!(server.subscribers("slow").await, 1, "never disconnected");
    server.stop().await;
}

/// A lean TLS subscriber keeps only its keys, not the secrets new keys derive from: a client's
/// KeyUpdate ends the stream, and the client resumes with its Last-Event-ID and misses nothing.
#[tokio::test]
async fn a_key_update_while_lent_ends_the_stream_and_a_resume_misses_nothing() {
    let server = Running::start(Hub::builder().build()).await;
    let mut sub = Subscriber::open(server.port, "/events/keys", None, None).await;
    sub.assert_lean();
    server.wait_subscribers("keys", 1).await;
    let before = server
        .hub
        .publish("keys", sse_proto::Event::message("before"))
        .await
        .unwrap();
    sub.read_until(b"data: before\n\n").await;
    // Lent to a flusher now. The client's KeyUpdate asks the server for one of its own.
    sub.tls.get_mut().1.refresh_traffic_keys().unwrap();
    sub.tls.flush().await.unwrap();
    server.wait_subscribers("keys", 0).await;
    // The stream ends (with or without close_notify: the client sees an error or EOF).
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(WAIT, sub.tls.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "the stream stayed open after a KeyUpdate");
    assert_eq!(sub.data(), ["before"]);

    server
        .hub
        .publish("keys", sse_proto::Event::message("missed"))
        .await
        .unwrap();
    let mut sub = Subscriber::open(server.port, "/events/keys", Some(&before), None).await;
    sub.assert_lean();
    sub.read_until(b"data: missed\n\n").await;
    server.wait_subscribers("keys", 1).await;
    server
        .hub
        .publish("keys", sse_proto::Event::message("after"))
        .await
        .unwrap();
    sub.read_until(b"data: after\n\n").await;
    assert_eq!(sub.data(), ["missed", "after"]);
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_closes_while_lent_is_forgotten() {
    let server = Running::start(Hub::builder().build()).await;
    // With close_notify, then without (the TCP connection just ends).
    for polite in [true, false] {
        let mut sub = Subscriber::open(server.port, "/events/bye", None, None).await;
        sub.assert_lean();
        server.wait_subscribers("bye", 1).await;
        server
            .hub
            .publish("bye", sse_proto::Event::message("one"))
            .await
            .unwrap();
        sub.read_until(b"data: one\n\n").await;
        if polite {
            sub.tls.shutdown().await.unwrap();
            // Half-closed: the server sees close_notify, not EOF, and still ends the stream.
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(WAIT, sub.tls.read_to_end(&mut rest)).await;
            drop(sub);
        } else {
            drop(sub);
        }
        server.wait_subscribers("bye", 0).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_resumed_subscriber_gets_what_it_missed_then_live_events() {
    let server = Running::start(Hub::builder().build()).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            server
                .hub
                .publish("resume", sse_proto::Event::message(format!("old {i}")))
                .await
                .unwrap(),
        );
    }
    let mut sub = Subscriber::open(server.port, "/events/resume", Some(&ids[0]), None).await;
    sub.assert_lean();
    sub.read_until(b"data: old 2\n\n").await;
    server.wait_subscribers("resume", 1).await;
    server
        .hub
        .publish("resume", sse_proto::Event::message("live"))
        .await
        .unwrap();
    sub.read_until(b"data: live\n\n").await;
    assert_eq!(sub.data(), ["old 1", "old 2", "live"]);
    server.stop().await;
}

#[tokio::test]
async fn http2_over_tls_and_other_requests_stay_with_hyper() {
    let server = Running::start(Hub::builder().build()).await;
    // ALPN h2: hyper's HTTP/2.
    let cert = reqwest::Certificate::from_pem(&std::fs::read(CERT).unwrap()).unwrap();
    let h2 = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(cert)
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/events/h2", server.port);
    let mut reader = support::Reader::open(&h2, &url, None).await;
    assert_eq!(reader.version, reqwest::Version::HTTP_2);
    server.wait_subscribers("h2", 1).await;
    server
        .hub
        .publish("h2", sse_proto::Event::message("over h2"))
        .await
        .unwrap();
    assert_eq!(reader.message().await.unwrap().data, "over h2");

    // Not a subscription over HTTP/1.1: hyper answers, and keeps the connection.
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let mut tls = connector(&[b"http/1.1"])
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut got = vec![0u8; 4096];
    let n = tokio::time::timeout(WAIT, tls.read(&mut got))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&got[..n]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    server.stop().await;
}
