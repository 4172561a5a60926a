//! A real Redis Cluster on loopback: 3 primaries and 3 replicas (`redis-server --cluster-enabled yes`,
//! joined by `redis-cli --cluster create`), each node in its own temp dir, every process killed (by
//! pid, SIGKILL) when the [`RedisCluster`] drops. Include it with
//! `#[path = "support/redis_cluster.rs"] mod redis_cluster;`.
#![allow(dead_code)]

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::support::Reader;

/// The bucket of a channel (FNV-1a 32 mod 16), as the cluster store's key layout defines it.
pub fn bucket(channel: &str) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for b in channel.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(16_777_619);
    }
    (h % 16) as usize
}

/// A Redis entry id (`<ms>-<n>`) as a pair that compares in entry order.
pub fn position(id: &str) -> (u64, u64) {
    let (a, b) = id.split_once('-').expect("a Redis entry id");
    (a.parse().unwrap(), b.parse().unwrap())
}

/// Reads messages until every data of `want` arrived (20 s without one fails): all (id, data) read.
pub async fn read_until(
    reader: &mut Reader,
    want: &std::collections::BTreeSet<String>,
) -> Vec<(String, String)> {
    let mut got = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    while !want.is_subset(&seen) {
        let m = tokio::time::timeout(Duration::from_secs(20), reader.message())
            .await
            .unwrap_or_else(|_| panic!("missing {:?}", want.difference(&seen).collect::<Vec<_>>()))
            .expect("stream ended early");
        assert_ne!(m.event_type, "sse-reset", "unexpected reset: {}", m.data);
        seen.insert(m.data.to_string());
        got.push((m.last_event_id.into(), m.data.into()));
    }
    got
}

/// Upper bound for one wait (cluster creation, a slot change taking effect).
pub const WAIT: Duration = Duration::from_secs(30);

/// `false` (after a loud SKIPPED line) when redis-server or redis-cli is missing, unless
/// SSE_REQUIRE_REDIS=1, which makes it fail instead.
pub fn cluster_tools_available(test: &str) -> bool {
    ["redis-server", "redis-cli"].iter().all(|tool| {
        crate::support::tool_available(
            tool,
            "--version",
            "SSE_REQUIRE_REDIS",
            "apt-get install redis-server (it ships redis-cli)",
            test,
        )
    })
}

/// A free loopback port whose cluster-bus port (+10000) is free too.
fn free_port_pair() -> u16 {
    for _ in 0..1000 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair for a cluster node");
}

/// One cluster node.
pub struct ClusterNode {
    pub port: u16,
    child: Option<Child>,
}

/// A slot migration in progress (see [`RedisCluster::begin_migration`]).
pub struct Migration {
    pub slot: u16,
    pub from: u16,
    pub to: u16,
    from_id: String,
    to_id: String,
}

pub struct RedisCluster {
    pub nodes: Vec<ClusterNode>,
    /// Every node speaks only TLS (clients, replication, cluster bus): see [`RedisCluster::start_tls`].
    pub tls: bool,
    _dir: tempfile::TempDir,
}

/// The test certificate (self-signed for 127.0.0.1, its own CA) or its key.
pub fn tls_fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The flags that make a node listen with TLS only on `port` and talk TLS to its peers.
fn tls_args(port: u16) -> Vec<String> {
    let (cert, key) = (tls_fixture("test-cert.pem"), tls_fixture("test-key.pem"));
    [
        "--port",
        "0",
        "--tls-port",
        &port.to_string(),
        "--tls-cluster",
        "yes",
        "--tls-replication",
        "yes",
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &cert,
        "--tls-auth-clients",
        "no",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Starts one cluster node on `port` (TLS only when `tls`), keeping its files (`nodes.conf`) in `dir`.
fn spawn_node(port: u16, dir: &std::path::Path, tls: bool) -> Child {
    let listen = if tls {
        tls_args(port)
    } else {
        vec!["--port".into(), port.to_string()]
    };
    Command::new("redis-server")
        .args(listen)
        .args(["--bind", "127.0.0.1"])
        .args([
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
        ])
        .args(["--cluster-node-timeout", "2000"])
        .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
        .args(["--loglevel", "warning"])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("cannot start redis-server")
}

impl RedisCluster {
    /// Starts 6 nodes and joins them into 3 primaries with one replica each; returns once every
    /// node says `cluster_state:ok` and knows all 16384 slots.
    pub async fn start() -> RedisCluster {
        Self::start_with(false).await
    }

    /// As [`RedisCluster::start`], every node speaking only TLS with the test certificate
    /// (`--tls-cluster yes`, `--tls-replication yes`; `CLUSTER SLOTS` announces the TLS ports).
    pub async fn start_tls() -> RedisCluster {
        Self::start_with(true).await
    }

    async fn start_with(tls: bool) -> RedisCluster {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = Vec::new();
        for _ in 0..6 {
            let port = free_port_pair();
            let node_dir = dir.path().join(port.to_string());
            std::fs::create_dir_all(&node_dir).unwrap();
            let child = spawn_node(port, &node_dir, tls);
            nodes.push(ClusterNode {
                port,
                child: Some(child),
            });
        }
        let cluster = RedisCluster {
            nodes,
            tls,
            _dir: dir,
        };
        for n in &cluster.nodes {
            cluster.wait_for(n.port, "PING", "PONG").await;
        }
        let mut create = Command::new("redis-cli");
        create.args(cluster.cli_tls());
        create.arg("--cluster").arg("create");
        for n in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", n.port));
        }
        let out = tokio::time::timeout(
            WAIT,
            create
                .args(["--cluster-replicas", "1", "--cluster-yes"])
                .stdin(Stdio::null())
                .output(),
        )
        .await
        .expect("redis-cli --cluster create timed out")
        .unwrap();
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        for n in &cluster.nodes {
            cluster
                .wait_for(n.port, "CLUSTER INFO", "cluster_state:ok")
                .await;
            cluster
                .wait_for(n.port, "CLUSTER INFO", "cluster_slots_ok:16384")
                .await;
        }
        cluster
    }

    /// `redis-cli`'s TLS flags when the nodes speak TLS.
    fn cli_tls(&self) -> Vec<String> {
        if self.tls {
            vec![
                "--tls".into(),
                "--cacert".into(),
                tls_fixture("test-cert.pem"),
            ]
        } else {
            Vec::new()
        }
    }

    /// `redis+cluster://` (`rediss+cluster://` with TLS) with the first three nodes as seeds.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self.nodes[..3]
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}+cluster://{}", seeds.join(","))
    }

    /// A plain (not cluster-aware) connection to the node on `port`.
    pub async fn conn(&self, port: u16) -> redis::aio::MultiplexedConnection {
        let client = if self.tls {
            redis::Client::build_with_tls(
                format!("rediss://127.0.0.1:{port}"),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(std::fs::read(tls_fixture("test-cert.pem")).unwrap()),
                },
            )
        } else {
            redis::Client::open(format!("redis://127.0.0.1:{port}"))
        };
        client
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// `redis-cli -p PORT ARGS…` (split on spaces): its standard output.
    pub async fn cli(&self, port: u16, args: &str) -> String {
        let out = Command::new("redis-cli")
            .args(self.cli_tls())
            .args(["-p", &port.to_string()])
            .args(args.split(' '))
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    async fn wait_for(&self, port: u16, args: &str, expect: &str) {
        tokio::time::timeout(WAIT, async {
            loop {
                if self.cli(port, args).await.contains(expect) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("node {port}: `{args}` never said {expect:?}"));
    }

    /// The ports of the current primaries.
    pub async fn primaries(&self) -> Vec<u16> {
        let mut out = Vec::new();
        for n in &self.nodes {
            if self.cli(n.port, "ROLE").await.starts_with("master") {
                out.push(n.port);
            }
        }
        out
    }

    /// The slot of a key with hash tag `tag`.
    pub async fn slot(&self, tag: &str) -> u16 {
        let port = self.nodes[0].port;
        let s = self.cli(port, &format!("CLUSTER KEYSLOT {{{tag}}}")).await;
        s.trim().parse().unwrap()
    }

    /// SIGKILLs the node on `port` (a crash: nothing saved, its replica takes over after
    /// `cluster-node-timeout`).
    pub async fn kill(&mut self, port: u16) {
        let node = self.nodes.iter_mut().find(|n| n.port == port).unwrap();
        if let Some(mut child) = node.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// Starts the killed node on `port` again with its `nodes.conf`: it rejoins the cluster (as a
    /// replica of whoever took over its slots) and waits until it says `cluster_state:ok`.
    pub async fn restart(&mut self, port: u16) {
        let dir = self._dir.path().join(port.to_string());
        let node = self.nodes.iter_mut().find(|n| n.port == port).unwrap();
        assert!(node.child.is_none(), "kill node {port} first");
        node.child = Some(spawn_node(port, &dir, self.tls));
        self.wait_for(port, "PING", "PONG").await;
        self.wait_for(port, "CLUSTER INFO", "cluster_state:ok")
            .await;
    }

    /// Waits until every running node says `cluster_state:ok` (after a failover).
    pub async fn wait_ok(&self) {
        for n in self.nodes.iter().filter(|n| n.child.is_some()) {
            self.wait_for(n.port, "CLUSTER INFO", "cluster_state:ok")
                .await;
        }
    }

    /// The port of the primary serving `slot` (asking a running node which node serves what).
    pub async fn owner(&self, slot: u16) -> u16 {
        let live = self.nodes.iter().find(|n| n.child.is_some()).unwrap();
        let mut conn = self.conn(live.port).await;
        let v: Vec<(u16, u16, (String, u16))> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async::<Vec<redis::Value>>(&mut conn)
            .await
            .unwrap()
            .into_iter()
            .map(|range| {
                let items: Vec<redis::Value> = redis::from_redis_value(range).unwrap();
                let start: u16 = redis::from_redis_value(items[0].clone()).unwrap();
                let end: u16 = redis::from_redis_value(items[1].clone()).unwrap();
                let node: Vec<redis::Value> = redis::from_redis_value(items[2].clone()).unwrap();
                let host: String = redis::from_redis_value(node[0].clone()).unwrap();
                let port: u16 = redis::from_redis_value(node[1].clone()).unwrap();
                (start, end, (host, port))
            })
            .collect();
        v.into_iter()
            .find(|(s, e, _)| (*s..=*e).contains(&slot))
            .map(|(_, _, (_, p))| p)
            .expect("slot not served")
    }

    /// Moves `slot` from its primary to the primary on `to`, the way `redis-cli --cluster reshard`
    /// does (IMPORTING/MIGRATING, MIGRATE of every key, SETSLOT NODE on every primary), with `pause`
    /// between the steps so traffic meets each state of the migration.
    pub async fn migrate_slot(&self, slot: u16, to: u16, pause: Duration) {
        let m = self.begin_migration(slot, to).await;
        tokio::time::sleep(pause).await;
        self.move_keys(&m).await;
        tokio::time::sleep(pause).await;
        self.finish_migration(&m).await;
    }

    /// Marks `slot` IMPORTING on `to` and MIGRATING on its primary (no key moves yet).
    pub async fn begin_migration(&self, slot: u16, to: u16) -> Migration {
        let from = self.owner(slot).await;
        assert_ne!(from, to, "slot {slot} is already on {to}");
        let m = Migration {
            slot,
            from,
            to,
            from_id: self.cli(from, "CLUSTER MYID").await.trim().to_owned(),
            to_id: self.cli(to, "CLUSTER MYID").await.trim().to_owned(),
        };
        let mut dst = self.conn(to).await;
        let _: () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("IMPORTING")
            .arg(&m.from_id)
            .query_async(&mut dst)
            .await
            .unwrap();
        let mut src = self.conn(from).await;
        let _: () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("MIGRATING")
            .arg(&m.to_id)
            .query_async(&mut src)
            .await
            .unwrap();
        m
    }

    /// MIGRATEs every key of the slot to the importing node (the slot stays MIGRATING).
    pub async fn move_keys(&self, m: &Migration) {
        let mut src = self.conn(m.from).await;
        loop {
            let keys: Vec<Vec<u8>> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(m.slot)
                .arg(100)
                .query_async(&mut src)
                .await
                .unwrap();
            if keys.is_empty() {
                return;
            }
            let _: redis::Value = redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(m.to)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(keys)
                .query_async(&mut src)
                .await
                .unwrap();
        }
    }

    /// Gives the slot to the importing node on every primary, and waits until it is served there.
    pub async fn finish_migration(&self, m: &Migration) {
        for port in self.primaries().await {
            let mut c = self.conn(port).await;
            let _: () = redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(m.slot)
                .arg("NODE")
                .arg(&m.to_id)
                .query_async(&mut c)
                .await
                .unwrap();
        }
        tokio::time::timeout(WAIT, async {
            while self.owner(m.slot).await != m.to {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the slot move never took effect");
    }

    /// The keys (raw) stored on the node on `port` under `pattern`.
    pub async fn keys(&self, port: u16, pattern: &str) -> Vec<Vec<u8>> {
        let mut c = self.conn(port).await;
        redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut c)
            .await
            .unwrap()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut child) = n.child.take() {
                let _ = child.start_kill();
            }
        }
    }
}
