//! The instrument checks itself: the reader and the statistics must see lost, duplicated and
//! reordered events, however the bytes are split, and a real socket run against a tiny scripted
//! server must count exactly what it was sent.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::time::Duration;

use sse_bench::load::{Endpoint, Fleet, Publish};
use sse_bench::reader::{BodyReader, Head, payload};
use sse_bench::stats::{Histogram, SeqTracker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn chunked(events: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        out.extend_from_slice(format!("{:x}\r\n{e}\r\n", e.len()).as_bytes());
    }
    out
}

fn event(seq: u64) -> String {
    format!("id: {seq}\ndata: {}\n\n", payload(seq, 1000 + seq, 40))
}

fn read_all(bytes: &[u8], split: usize) -> SeqTracker {
    let head = Head {
        status: 200,
        chunked: true,
        content_length: None,
    };
    let mut reader = BodyReader::new(&head);
    let mut tracker = SeqTracker::default();
    for piece in bytes.chunks(split) {
        reader.feed(piece, |s| tracker.record(s.seq)).unwrap();
    }
    tracker
}

#[test]
fn detects_lost_duplicated_and_clean_streams_at_every_split() {
    let clean: Vec<String> = (1..=20).map(event).collect();
    let mut faulty: Vec<u64> = (1..=20).collect();
    faulty.retain(|&s| s != 5 && s != 6); // lost 5, 6
    faulty.insert(10, 9); // a duplicate of 9
    let faulty: Vec<String> = faulty.into_iter().map(event).collect();
    for split in [1, 2, 3, 7, 64, 4096] {
        let mut t = read_all(&chunked(&clean), split);
        t.finish(20);
        assert_eq!(
            (t.received(), t.lost(), t.duplicated()),
            (20, 0, 0),
            "split {split}"
        );

        let mut t = read_all(&chunked(&faulty), split);
        t.finish(21); // the publisher also sent 21, which never arrived
        assert_eq!(t.lost(), 3, "split {split}");
        assert_eq!(t.duplicated(), 1, "split {split}");
    }
}

#[test]
fn rejects_broken_chunk_framing() {
    let head = Head {
        status: 200,
        chunked: true,
        content_length: None,
    };
    let mut reader = BodyReader::new(&head);
    assert!(reader.feed(b"zz\r\n", |_| {}).is_err());
}

#[test]
fn histogram_percentiles_within_two_percent() {
    let mut h = Histogram::default();
    for v in 1..=100_000u64 {
        h.record(v);
    }
    for (p, want) in [(50.0, 50_000f64), (99.0, 99_000.0), (99.9, 99_900.0)] {
        let got = h.percentile(p) as f64;
        assert!((got - want).abs() / want < 0.02, "p{p}: {got} vs {want}");
    }
    assert_eq!(h.max(), 100_000);
    let cdf = h.cdf();
    assert!(cdf.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
    assert!((cdf.last().unwrap().1 - 1.0).abs() < 1e-9);
}

/// A scripted SSE server: answers every subscriber with the same (faulty) event sequence, and
/// publishes with `200` without fanning anything out.
async fn scripted_server(events: Vec<u64>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let events = events.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                loop {
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    // Answer every complete request (publishes arrive pipelined).
                    while let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        let len = end + 4;
                        if got.starts_with(b"GET") {
                            let body: Vec<String> = events.iter().map(|&s| event(s)).collect();
                            let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
                            out.extend(chunked(&body));
                            let _ = sock.write_all(&out).await;
                            // Hold the stream open like an SSE server would.
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            return;
                        }
                        let text = String::from_utf8_lossy(&got[..len]).to_ascii_lowercase();
                        let body_len: usize = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if got.len() < len + body_len {
                            break;
                        }
                        got.drain(..len + body_len);
                        let _ = sock
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                            .await;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn fleet_counts_what_a_faulty_server_sends() {
    // The server sends 1, 2, 2, 4 to each subscriber; the books are closed at 4: per subscriber one
    // duplicate (2) and one lost (3). The publisher's requests must succeed too.
    let addr = scripted_server(vec![1, 2, 2, 4]).await;
    let endpoint = Endpoint {
        addr,
        host: addr.to_string(),
        path: "/events/x".into(),
    };
    let publish = Publish::Http {
        endpoint: endpoint.clone(),
        token: "t".into(),
    };
    let mut fleet = Fleet::new(endpoint);
    tokio::time::timeout(Duration::from_secs(10), fleet.grow(3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fleet.connected(), 3);
    let stats = tokio::time::timeout(
        Duration::from_secs(20),
        fleet.run(&publish, 32, Some(100.0), 16, Duration::from_millis(15)),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(stats.published >= 1, "published {}", stats.published);
    let outcomes = tokio::time::timeout(Duration::from_secs(10), fleet.finish(4))
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 3);
    for o in outcomes {
        assert!(!o.dropped);
        assert_eq!(o.tracker.received(), 4);
        assert_eq!(o.tracker.lost(), 1);
        assert_eq!(o.tracker.duplicated(), 1);
    }
}
