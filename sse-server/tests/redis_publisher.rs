//! Publishing from any language: a Python (redis-py) script writes stream entries exactly as the
//! README's Redis contract says (`tests/fixtures/redis_publish.py`), and subscribers of a hub node
//! started with `--redis` receive them, live and on replay, with the documented ids.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod cluster_support;
mod support;

use cluster_support::{Node, cluster, publish, redis_available};
use sse_proto::Item;
use support::Reader;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/redis_publish.py"
);

/// Whether python3 with redis-py is there; fails instead of skipping when SSE_REQUIRE_PEERS=1 or
/// SSE_REQUIRE_REDIS=1.
fn redis_py_available(test: &str) -> bool {
    let found = std::process::Command::new("python3")
        .args(["-c", "import redis"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        for var in ["SSE_REQUIRE_PEERS", "SSE_REQUIRE_REDIS"] {
            assert!(
                std::env::var(var).as_deref() != Ok("1"),
                "python3 with redis-py is missing but {var}=1: install it (pip install redis)"
            );
        }
        eprintln!(
            "SKIPPED: python3 with redis-py not installed ({test}); set SSE_REQUIRE_PEERS=1 to fail instead"
        );
    }
    found
}

/// Runs the Python publisher; the id it prints.
async fn py_publish(redis_url: &str, channel: &str, data: &str, extra: &[&str]) -> String {
    let out = tokio::time::timeout(
        cluster_support::WAIT,
        tokio::process::Command::new("python3")
            .arg(SCRIPT)
            .args([redis_url, channel, data])
            .args(extra)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the python publisher did not finish in time")
    .unwrap();
    assert!(
        out.status.success(),
        "python publisher failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn entry_id(id: &str) -> (u64, u64) {
    let (a, b) = id
        .split_once('-')
        .unwrap_or_else(|| panic!("{id:?} is not <ms>-<seq>"));
    (a.parse().unwrap(), b.parse().unwrap())
}

async fn subscribe(node: &Node, channel: &str, last: Option<&str>) -> Reader {
    let client = reqwest::Client::new();
    Reader::open(&client, &node.url(&format!("/events/{channel}")), last).await
}

#[tokio::test]
async fn python_redis_publisher_reaches_subscribers_with_the_documented_ids() {
    let test = "python_redis_publisher_reaches_subscribers_with_the_documented_ids";
    if !redis_available(test) || !redis_py_available(test) {
        return;
    }
    let (redis, nodes) = cluster(1).await;
    let node = &nodes[0];
    let url = redis.url();
    let client = reqwest::Client::new();
    let mut reader = subscribe(node, "py", None).await;

    // Without an id: the Redis entry id is the event's id, ordered after the hub's own ids.
    let hub_id = publish(&client, node, "py", "from the hub").await;
    let first = py_publish(&url, "py", "line one\nline two", &["--event", "note"]).await;
    assert!(
        entry_id(&first) > entry_id(&hub_id),
        "{first} after {hub_id}"
    );
    let m = reader.message().await.unwrap();
    assert_eq!(m.data, "from the hub");
    let m = reader.message().await.unwrap();
    assert_eq!(
        (
            m.event_type.as_str(),
            m.data.as_str(),
            m.last_event_id.as_str()
        ),
        ("note", "line one\nline two", first.as_str())
    );

    // With its own id (field `c`), plus a comment and `retry:` (field `h`): sent as written.
    let own = py_publish(
        &url,
        "py",
        "",
        &[
            "--id",
            "order-42",
            "--comment",
            "from python",
            "--retry",
            "2500",
        ],
    )
    .await;
    assert_eq!(own, "order-42");
    let mut seen = (false, false);
    let m = loop {
        match reader.next().await.expect("stream ended") {
            Item::Comment(c) if c.trim() == "from python" => seen.0 = true,
            Item::Retry(r) if r.as_millis() == 2500 => seen.1 = true,
            Item::Message(m) => break m,
            _ => {}
        }
    };
    assert_eq!(seen, (true, true), "comment and retry lines of field h");
    assert_eq!(
        (m.data.as_str(), m.last_event_id.as_str()),
        ("", "order-42")
    );
    drop(reader);

    // Resuming after either kind of id replays exactly what followed it, on any node.
    let last = py_publish(&url, "py", "last", &[]).await;
    let mut reader = subscribe(node, "py", Some(&first)).await;
    let got: Vec<(String, String)> = [
        reader.message().await.unwrap(),
        reader.message().await.unwrap(),
    ]
    .into_iter()
    .map(|m| (m.last_event_id.to_string(), m.data.to_string()))
    .collect();
    assert_eq!(
        got,
        [
            ("order-42".to_owned(), String::new()),
            (last.clone(), "last".to_owned())
        ]
    );
    let mut reader = subscribe(node, "py", Some("order-42")).await;
    let m = reader.message().await.unwrap();
    assert_eq!(
        (m.last_event_id.as_str(), m.data.as_str()),
        (last.as_str(), "last")
    );
}
