//! One stream on 2-8 channels and `prefix/*` patterns (`GET /events?channel=…&channel=…`), cut at
//! random and resumed with the last id it saw, while events are published to the followed channels,
//! to channels outside the set, and to channels created after it connected that match a pattern:
//! every event of every followed channel arrives exactly once, in its channel's order, and nothing
//! from other channels. Against the real binary with the memory store, `--data-dir`, and three
//! nodes on one real `redis-server` (publishes and reconnects landing on different nodes).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod cluster_support;
mod support;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use support::{Reader, WAIT};
use tokio::process::{Child, Command};

const TOKEN: &str = "multi-resume-token";
/// Names `n0..n5`, patterns `p0/*..p2/*` (of each case's own prefix).
const NAMES: usize = 6;
const PATTERNS: usize = 3;

/// One `sse-server` process, killed on drop.
struct Node {
    base: String,
    _child: Child,
}

impl Node {
    async fn start(extra: &[&str]) -> Node {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sse-server"));
        cmd.args(["--listen", "127.0.0.1:0", "--no-demo", "--heartbeat", "1"])
            .args(["--publish-token", TOKEN, "--replay-events", "10000"])
            .args(extra)
            .env("RUST_LOG", "warn");
        let (child, base) = support::spawn_server(cmd, Stdio::null()).await;
        Node {
            base,
            _child: child,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// The hubs of one backend; what they need (a data directory, redis) lives as long as they do.
struct Hubs {
    nodes: Vec<Node>,
    _dir: Option<tempfile::TempDir>,
    _redis: Option<cluster_support::Redis>,
}

impl Hubs {
    async fn memory() -> Hubs {
        Hubs {
            nodes: vec![Node::start(&[]).await],
            _dir: None,
            _redis: None,
        }
    }

    async fn durable() -> Hubs {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap().to_owned();
        Hubs {
            nodes: vec![Node::start(&["--data-dir", &path]).await],
            _dir: Some(dir),
            _redis: None,
        }
    }

    async fn redis() -> Hubs {
        let redis = cluster_support::Redis::start().await;
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(Node::start(&["--redis", &redis.url()]).await);
        }
        Hubs {
            nodes,
            _dir: None,
            _redis: Some(redis),
        }
    }

    fn node(&self, i: usize) -> &Node {
        &self.nodes[i % self.nodes.len()]
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// Publish on target `t` of [`Universe::targets`] through node `node`.
    Publish {
        t: usize,
        node: usize,
    },
    /// A broadcast (to every channel) through node `node`.
    Broadcast {
        node: usize,
    },
    /// Drop the connection and resume with the last id seen, on another node; in the
    /// `Last-Event-ID` header, or in `?lastEventId=` as a page that builds its own URL would.
    Cut {
        node: usize,
        query: bool,
    },
    Pause(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (0usize..64, 0usize..3).prop_map(|(t, node)| Op::Publish { t, node }),
        1 => (0usize..3).prop_map(|node| Op::Broadcast { node }),
        3 => (0usize..3, any::<bool>()).prop_map(|(node, query)| Op::Cut { node, query }),
        1 => (0u8..8).prop_map(Op::Pause),
    ]
}

#[derive(Debug, Clone)]
struct Schedule {
    /// Indexes into names (`< NAMES`) and patterns (`NAMES..`), 2-8 of them.
    entries: Vec<usize>,
    ops: Vec<Op>,
}

fn schedule() -> impl Strategy<Value = Schedule> {
    (
        proptest::sample::subsequence((0..NAMES + PATTERNS).collect::<Vec<_>>(), 2..=8)
            .prop_shuffle(),
        proptest::collection::vec(op(), 1..40),
    )
        .prop_map(|(entries, ops)| Schedule { entries, ops })
}

/// The channels of one case, all under a prefix of its own, so cases sharing a hub do not meet.
struct Universe {
    case: usize,
    entries: Vec<String>,
    patterns: Vec<String>,
    targets: Vec<String>,
}

impl Universe {
    fn new(case: usize, picked: &[usize]) -> Universe {
        let pre = format!("c{case}-");
        let name = |i: usize| format!("{pre}n{i}");
        let prefix = |j: usize| format!("{pre}p{j}");
        let entries: Vec<String> = picked
            .iter()
            .map(|&i| {
                if i < NAMES {
                    name(i)
                } else {
                    format!("{}/*", prefix(i - NAMES))
                }
            })
            .collect();
        let patterns = entries
            .iter()
            .filter_map(|e| e.strip_suffix('*').map(str::to_owned))
            .collect();
        let mut targets: Vec<String> = (0..NAMES).map(name).collect();
        for j in 0..PATTERNS {
            let p = prefix(j);
            // Under the pattern (all created after the stream connected), nested, and just outside.
            targets.extend([0, 1, 2].map(|m| format!("{p}/{m}")));
            targets.push(format!("{p}/deep/0"));
            targets.extend([p.clone(), format!("{p}x/0")]);
        }
        targets.push(format!("{pre}other"));
        targets.push(format!("c{}-n0", case + 100_000));
        Universe {
            case,
            entries,
            patterns,
            targets,
        }
    }

    fn follows(&self, channel: &str) -> bool {
        self.entries.iter().any(|e| e == channel)
            || self
                .patterns
                .iter()
                .any(|p| channel.starts_with(p.as_str()))
    }

    /// A followed channel to probe the stream with: the first entry, or a child of its pattern.
    fn probe(&self) -> String {
        let first = &self.entries[0];
        match first.strip_suffix('*') {
            Some(p) => format!("{p}probe"),
            None => first.clone(),
        }
    }

    fn query(&self) -> String {
        let list: Vec<String> = self
            .entries
            .iter()
            .map(|e| format!("channel={e}"))
            .collect();
        format!("/events?{}", list.join("&"))
    }
}

async fn post(node: &Node, path: &str, data: &str) -> String {
    let resp = tokio::time::timeout(
        WAIT,
        support::client()
            .post(node.url(path))
            .bearer_auth(TOKEN)
            .form(&[("data", data)])
            .send(),
    )
    .await
    .expect("publish timed out")
    .unwrap();
    assert_eq!(resp.status(), 200, "publish on {path} failed");
    let json: serde_json::Value = resp.json().await.unwrap();
    json["id"].as_str().unwrap().to_owned()
}

/// What a stream received: `(id, data)` in order, and the reason it failed, if it did.
#[derive(Default)]
struct Seen {
    messages: Vec<(String, String)>,
    failed: Option<String>,
}

/// Reads `url` from `last` (resuming by itself if the hub ends the stream) into `seen`, until aborted;
/// the id goes in `?lastEventId=` when `query`, else in the `Last-Event-ID` header.
fn read_into(
    url: String,
    last: Option<String>,
    query: bool,
    seen: Arc<Mutex<Seen>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let c = support::client();
        let mut last = last;
        loop {
            let req = match &last {
                Some(id) if query => c.get(format!("{url}&lastEventId={id}")),
                Some(id) => c.get(&url).header("last-event-id", id),
                None => c.get(&url),
            };
            let mut reader = Reader::from_request(req).await;
            while let Some(m) = reader.message().await {
                let mut s = seen.lock().unwrap();
                if m.event_type == "sse-reset" {
                    s.failed = Some(format!("sse-reset resuming from {last:?}: {}", m.data));
                    return;
                }
                if m.last_event_id.len() > 256 {
                    s.failed = Some(format!("an id of {} bytes", m.last_event_id.len()));
                }
                last = Some(String::from(&m.last_event_id));
                s.messages
                    .push((m.last_event_id.to_string(), m.data.to_string()));
            }
        }
    })
}

/// Waits until `seen` holds a message with `data`, or fails (also when the reader stopped, e.g. on
/// a refused subscription).
async fn wait_for(
    reader: &mut tokio::task::JoinHandle<()>,
    seen: &Mutex<Seen>,
    data: &str,
    bound: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        if reader.is_finished() && seen.lock().unwrap().failed.is_none() {
            return Err(format!("the reader stopped: {:?}", reader.await));
        }
        {
            let s = seen.lock().unwrap();
            if let Some(why) = &s.failed {
                return Err(why.clone());
            }
            if s.messages.iter().any(|(_, d)| d == data) {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{data:?} never arrived"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

static CASE: AtomicUsize = AtomicUsize::new(0);

async fn run_case(hubs: &Hubs, schedule: Schedule) -> Result<(), TestCaseError> {
    let u = Universe::new(CASE.fetch_add(1, Ordering::Relaxed), &schedule.entries);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut at = 0;
    let mut reader = read_into(hubs.node(at).url(&u.query()), None, false, seen.clone());

    // A fresh stream (no id yet) receives only what is published once it is live: probe until it is.
    let probe = u.probe();
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut probes = Vec::new();
    let live_by = tokio::time::Instant::now() + WAIT;
    loop {
        let data = format!("{probe}|probe{}", probes.len());
        post(hubs.node(at + 1), &format!("/events/{probe}"), &data).await;
        probes.push(data);
        let first = seen.lock().unwrap().messages.first().map(|m| m.1.clone());
        if let Some(first) = first {
            let owed = probes.iter().position(|p| *p == first).unwrap() + 1;
            expected.insert(probe.clone(), probes[owed..].to_vec());
            break;
        }
        if reader.is_finished() {
            let why = seen.lock().unwrap().failed.clone();
            return Err(TestCaseError::fail(format!(
                "{why:?} {:?}",
                (&mut reader).await
            )));
        }
        prop_assert!(
            tokio::time::Instant::now() < live_by,
            "the stream never went live"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // What happened, with the hub's ids: shown when the case fails.
    let mut trace = Vec::new();
    for (seq, op) in schedule.ops.iter().enumerate() {
        match *op {
            Op::Publish { t, node } => {
                let channel = &u.targets[t % u.targets.len()];
                let data = format!("{channel}|{seq}");
                let id = post(hubs.node(node), &format!("/events/{channel}"), &data).await;
                trace.push(format!("{data}@{id}"));
                if u.follows(channel) {
                    expected.entry(channel.clone()).or_default().push(data);
                }
            }
            Op::Broadcast { node } => {
                let data = format!("*|{}|{seq}", u.case);
                let id = post(hubs.node(node), "/events", &data).await;
                trace.push(format!("{data}@{id}"));
                expected.entry("*".into()).or_default().push(data);
            }
            Op::Cut { node, query } => {
                reader.abort();
                let _ = reader.await;
                let last = seen.lock().unwrap().messages.last().map(|m| m.0.clone());
                trace.push(format!("cut, resume from {last:?}"));
                // On a cluster, always another node than the one just cut.
                at += 1 + node % 2;
                reader = read_into(hubs.node(at).url(&u.query()), last, query, seen.clone());
            }
            Op::Pause(ms) => tokio::time::sleep(Duration::from_millis(ms.into())).await,
        }
    }
    let end = format!("{probe}|end");
    post(hubs.node(at + 2), &format!("/events/{probe}"), &end).await;
    expected.entry(probe.clone()).or_default().push(end.clone());
    let waited = wait_for(&mut reader, &seen, &end, WAIT).await;
    reader.abort();
    waited.map_err(TestCaseError::fail)?;

    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // The first message (a probe) counts as received, not owed.
    for (_, data) in seen.lock().unwrap().messages.iter().skip(1) {
        // A broadcast of an earlier case may still be in the window of a channel of this one.
        let channel = data.split('|').next().unwrap();
        if channel == "*" && !data.starts_with(&format!("*|{}|", u.case)) {
            continue;
        }
        got.entry(channel.to_owned())
            .or_default()
            .push(data.clone());
    }
    prop_assert_eq!(
        got,
        expected,
        "entries {:?}: every event of every followed channel once, in order, nothing else\n\
         trace: {:?}\nreceived: {:?}",
        u.entries,
        trace,
        seen.lock().unwrap().messages
    );
    Ok(())
}

/// Runs `cases` schedules against `hubs`, on a runtime of 2 threads.
fn run(hubs: impl std::future::Future<Output = Hubs>, cases: u32) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let hubs = rt.block_on(hubs);
    let mut runner = TestRunner::new(Config {
        cases,
        max_shrink_iters: 16,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&schedule(), |s| {
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), run_case(&hubs, s))
                .await
                .map_err(|_| TestCaseError::fail("the schedule took over 30 s"))?
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn memory_store_resumes_every_followed_channel_exactly_once() {
    run(Hubs::memory(), 40);
}

#[test]
fn durable_store_resumes_every_followed_channel_exactly_once() {
    run(Hubs::durable(), 24);
}

#[test]
fn redis_cluster_resumes_every_followed_channel_exactly_once_across_nodes() {
    if !cluster_support::redis_available("multi-channel resume on a cluster") {
        return;
    }
    run(Hubs::redis(), 24);
}

/// `/channels` as `(name, subscribers)`.
async fn channels(node: &Node) -> Vec<(String, u64)> {
    let resp = support::client()
        .get(node.url("/channels"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let list: Vec<serde_json::Value> = resp.json().await.unwrap();
    list.iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["subscribers"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Subscribes on node 0 to `late/*` and `ready`; publishes through node 1 (the same node unless a
/// cluster): channels created after the stream connected reach it, the prefix itself and a longer
/// prefix do not, and `/channels` counts it once per channel it follows.
async fn pattern_follows_a_channel_created_later(hubs: &Hubs) {
    let (sub_node, pub_node) = (hubs.node(0), hubs.node(1));
    let c = support::client();
    let mut sub = Reader::open(
        &c,
        &sub_node.url("/events?channel=late/*&channel=ready"),
        None,
    )
    .await;
    // Live once `ready` counts it; `late/…` does not exist yet.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !channels(sub_node).await.contains(&("ready".into(), 1)) {
        assert!(tokio::time::Instant::now() < deadline, "never subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        channels(sub_node)
            .await
            .iter()
            .all(|(n, _)| !n.starts_with("late")),
        "a pattern creates no channel"
    );
    post(pub_node, "/events/late", "the prefix itself").await;
    post(pub_node, "/events/latex/1", "a longer prefix").await;
    let id = post(pub_node, "/events/late/new", "created after").await;
    let m = sub.message().await.unwrap();
    assert_eq!(
        (m.data.as_str(), m.last_event_id.as_str()),
        ("created after", id.as_str())
    );
    post(pub_node, "/events/late/new/deeper", "nested").await;
    post(pub_node, "/events/late/other", "another").await;
    assert_eq!(sub.message().await.unwrap().data, "nested");
    assert_eq!(sub.message().await.unwrap().data, "another");
    // Counted once per channel it follows, on the node it is connected to.
    let list = channels(sub_node).await;
    for name in ["ready", "late/new", "late/new/deeper", "late/other"] {
        assert!(list.contains(&(name.into(), 1)), "{name} in {list:?}");
    }
}

/// A resume with a long replay ahead of it (`backlog` events of `mid/a`), while a channel matching
/// its pattern is created and published to through another node: that event arrives, once, after
/// the backlog, and before the end marker.
async fn a_channel_created_during_a_replay_is_followed(hubs: &Hubs, round: usize) {
    let (sub_node, pub_node) = (hubs.node(round), hubs.node(round + 1));
    let pre = format!("mid{round}");
    let first = post(pub_node, &format!("/events/{pre}/a"), "0").await;
    for i in 1..200 {
        post(pub_node, &format!("/events/{pre}/a"), &i.to_string()).await;
    }
    let c = support::client();
    let url = sub_node.url(&format!("/events?channel={pre}/*&channel=x{round}"));
    let mut sub = Reader::open(&c, &url, Some(&first)).await;
    post(pub_node, &format!("/events/{pre}/new"), "late").await;
    post(pub_node, &format!("/events/{pre}/a"), "end").await;
    let mut got = Vec::new();
    while got.last().map(String::as_str) != Some("end") {
        got.push(
            sub.message()
                .await
                .expect("stream ended early")
                .data
                .to_string(),
        );
    }
    let want: Vec<String> = (1..200)
        .map(|i| i.to_string())
        .chain(["late".into(), "end".into()])
        .collect();
    assert_eq!(got, want, "round {round}");
}

/// A stream on `gone{round}/*` and `here{round}` drops; while it is away a channel matching the
/// pattern is created (through another node on a cluster); resuming with the last id replays it.
async fn a_channel_created_while_disconnected_is_replayed(hubs: &Hubs, round: usize) {
    let (sub_node, pub_node) = (hubs.node(round), hubs.node(round + 1));
    let url = sub_node.url(&format!(
        "/events?channel=gone{round}/*&channel=here{round}"
    ));
    let c = support::client();
    let mut sub = Reader::open(&c, &url, None).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !channels(sub_node)
        .await
        .contains(&(format!("here{round}"), 1))
    {
        assert!(tokio::time::Instant::now() < deadline, "never subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last = post(pub_node, &format!("/events/here{round}"), "seen").await;
    assert_eq!(sub.message().await.unwrap().data, "seen");
    drop(sub);
    post(pub_node, &format!("/events/gone{round}/new"), "while away").await;
    post(
        pub_node,
        &format!("/events/gone{round}/new/deeper"),
        "nested",
    )
    .await;
    post(pub_node, &format!("/events/here{round}"), "end").await;
    let mut sub = Reader::open(&c, &url, Some(&last)).await;
    let mut got = Vec::new();
    while got.last().map(String::as_str) != Some("end") {
        got.push(
            sub.message()
                .await
                .expect("stream ended early")
                .data
                .to_string(),
        );
    }
    assert_eq!(got, ["while away", "nested", "end"], "round {round}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_created_while_disconnected_is_replayed_on_resume() {
    let memory = Hubs::memory().await;
    let durable = Hubs::durable().await;
    for round in 0..2 {
        a_channel_created_while_disconnected_is_replayed(&memory, round).await;
        a_channel_created_while_disconnected_is_replayed(&durable, round).await;
    }
    if cluster_support::redis_available("a channel created while disconnected, on a cluster") {
        let redis = Hubs::redis().await;
        for round in 0..3 {
            a_channel_created_while_disconnected_is_replayed(&redis, round).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_created_while_a_resume_replays_is_followed() {
    let memory = Hubs::memory().await;
    let durable = Hubs::durable().await;
    for round in 0..3 {
        a_channel_created_during_a_replay_is_followed(&memory, round).await;
        a_channel_created_during_a_replay_is_followed(&durable, round).await;
    }
    if cluster_support::redis_available("a channel created during a replay, on a cluster") {
        let redis = Hubs::redis().await;
        for round in 0..3 {
            a_channel_created_during_a_replay_is_followed(&redis, round).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_receives_a_channel_created_after_it_connected() {
    pattern_follows_a_channel_created_later(&Hubs::memory().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_receives_a_channel_created_after_it_connected_with_a_data_dir() {
    pattern_follows_a_channel_created_later(&Hubs::durable().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_receives_a_channel_created_on_another_node_after_it_connected() {
    if !cluster_support::redis_available("a pattern across nodes") {
        return;
    }
    pattern_follows_a_channel_created_later(&Hubs::redis().await).await;
}
