//! Real Redis topologies on loopback for the failover tests: a Sentinel set (1 primary, 1 replica,
//! 3 sentinels watching master `M`), a TLS-only redis-server, and `sse-server` nodes with extra flags.
//! Every child is killed by pid when its handle drops; files live in a temporary directory.
#![allow(dead_code)]

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// Upper bound for one wait.
pub const WAIT: Duration = Duration::from_secs(10);
pub const TOKEN: &str = "failover-token";

/// The master name the sentinels watch.
pub const MASTER: &str = "M";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(args: &[String]) -> Child {
    Command::new("redis-server")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("cannot start redis-server")
}

/// A server on `port` keeping its files in a fresh directory under `dir`: a replica writes the RDB
/// of its full sync there (`dump.rdb`), and a later server started in the same directory would load it.
fn server_args(port: u16, dir: &std::path::Path) -> Vec<String> {
    let own = dir.join(format!("redis-{port}"));
    std::fs::create_dir_all(&own).unwrap();
    [
        "--dir",
        &own.display().to_string(),
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
        "--loglevel",
        "warning",
        // A replica loads the primary's data from the socket, not through a file: a full sync
        // does not depend on free disk space (a full disk once stalled the rejoin for 30 s).
        "--repl-diskless-load",
        "on-empty-db",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// `args` (from [`server_args`]) listening with TLS only, on the same port, when `tls`.
fn listen(mut args: Vec<String>, tls: bool) -> Vec<String> {
    if !tls {
        return args;
    }
    let at = args.iter().position(|a| a == "--port").unwrap();
    let port = std::mem::replace(&mut args[at + 1], "0".into());
    let (cert, key) = (fixture("test-cert.pem"), fixture("test-key.pem"));
    args.extend(
        [
            "--tls-port",
            &port,
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
        .map(str::to_owned),
    );
    args
}

/// A connection with the redis crate, for the fixture's own questions.
/// A `rediss://` URL trusts the test certificate.
pub async fn conn(url: &str) -> Option<redis::aio::MultiplexedConnection> {
    let client = if url.starts_with("rediss://") {
        let root = std::fs::read(fixture("test-cert.pem")).ok()?;
        redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root),
            },
        )
        .ok()?
    } else {
        redis::Client::open(url).ok()?
    };
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(2)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .ok()
}

/// Runs `cmd` against `url`, `None` on any failure.
pub async fn query<T: redis::FromRedisValue>(url: &str, cmd: &redis::Cmd) -> Option<T> {
    let mut c = conn(url).await?;
    cmd.query_async(&mut c).await.ok()
}

/// Polls `check` every 50 ms until it holds, failing with `what` after `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One primary, one replica (`--replicaof`), three sentinels (quorum 2, 1 s down-after).
pub struct SentinelSet {
    /// Every server and sentinel speaks only TLS (see [`SentinelSet::start_tls`]).
    pub tls: bool,
    pub primary_port: u16,
    pub replica_port: u16,
    pub sentinel_ports: Vec<u16>,
    primary: Option<Child>,
    replica: Option<Child>,
    sentinels: Vec<Child>,
    dir: tempfile::TempDir,
    /// Held while the set lives: see [`one_at_a_time`].
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

/// One Sentinel set (five servers, nodes, publishers) at a time per test binary: tests run in
/// parallel threads, and several failovers at once on two shared cores stretch every wait past its
/// bound. Taken by [`SentinelSet::start_with`] and held until the set drops.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

impl SentinelSet {
    pub async fn start() -> SentinelSet {
        Self::start_with(false).await
    }

    /// As [`SentinelSet::start`], with TLS only: the servers on `--tls-port` with
    /// `--tls-replication yes`, the sentinels on `tls-port` with `tls-replication yes` (so they
    /// talk TLS to the servers and to each other); the test certificate everywhere.
    pub async fn start_tls() -> SentinelSet {
        Self::start_with(true).await
    }

    async fn start_with(tls: bool) -> SentinelSet {
        let turn = one_at_a_time().await;
        let dir = tempfile::tempdir().unwrap();
        let primary_port = free_port();
        let replica_port = free_port();
        let primary = spawn(&listen(server_args(primary_port, dir.path()), tls));
        let mut replica_args = listen(server_args(replica_port, dir.path()), tls);
        replica_args.extend([
            "--replicaof".into(),
            "127.0.0.1".into(),
            primary_port.to_string(),
        ]);
        let replica = spawn(&replica_args);
        let mut sentinels = Vec::new();
        let mut sentinel_ports = Vec::new();
        for i in 0..3 {
            let port = free_port();
            let conf = dir.path().join(format!("sentinel-{i}.conf"));
            let listen = if tls {
                let (cert, key) = (fixture("test-cert.pem"), fixture("test-key.pem"));
                format!(
                    "port 0\ntls-port {port}\ntls-replication yes\ntls-cert-file {cert}\n\
                     tls-key-file {key}\ntls-ca-cert-file {cert}\ntls-auth-clients no\n"
                )
            } else {
                format!("port {port}\n")
            };
            std::fs::write(
                &conf,
                format!(
                    "{listen}bind 127.0.0.1\nprotected-mode no\ndir {}\nloglevel warning\n\
                     sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2\n\
                     sentinel down-after-milliseconds {MASTER} 1000\n\
                     sentinel failover-timeout {MASTER} 5000\n\
                     sentinel parallel-syncs {MASTER} 1\n",
                    dir.path().display()
                ),
            )
            .unwrap();
            sentinels.push(spawn(&[
                conf.display().to_string(),
                "--sentinel".to_owned(),
            ]));
            sentinel_ports.push(port);
        }
        let set = SentinelSet {
            _turn: turn,
            tls,
            primary_port,
            replica_port,
            sentinel_ports,
            primary: Some(primary),
            replica: Some(replica),
            sentinels,
            dir,
        };
        set.wait_ready().await;
        set.assert_ours().await;
        set
    }

    /// Each port answers with the process this fixture started (`process_id` of `INFO server`), not
    /// a stranger that took a port between `free_port` and the bind.
    async fn assert_ours(&self) {
        let mut expect = vec![
            (self.primary_port, self.primary.as_ref().and_then(Child::id)),
            (self.replica_port, self.replica.as_ref().and_then(Child::id)),
        ];
        for (port, child) in self.sentinel_ports.iter().zip(&self.sentinels) {
            expect.push((*port, child.id()));
        }
        for (port, pid) in expect {
            let url = self.node_url(port);
            let info: String = query(&url, redis::cmd("INFO").arg("server")).await.unwrap();
            let want = format!("process_id:{}\r", pid.unwrap());
            assert!(
                info.contains(&want),
                "port {port} is not the redis-server started here"
            );
        }
    }

    /// Waits until the replica is in sync and every sentinel knows the replica and the two others
    /// (without that, a failover cannot be authorised or has no one to promote).
    async fn wait_ready(&self) {
        let replica = self.replica_url();
        wait_until(Duration::from_secs(30), "replica in sync", || async {
            let info: Option<String> = query(&replica, redis::cmd("INFO").arg("replication")).await;
            info.is_some_and(|i| i.contains("master_link_status:up"))
        })
        .await;
        for port in &self.sentinel_ports {
            let url = self.node_url(*port);
            wait_until(
                Duration::from_secs(30),
                "sentinels know each other",
                || async {
                    let replicas: Option<Vec<redis::Value>> =
                        query(&url, redis::cmd("SENTINEL").arg("replicas").arg(MASTER)).await;
                    let others: Option<Vec<redis::Value>> =
                        query(&url, redis::cmd("SENTINEL").arg("sentinels").arg(MASTER)).await;
                    replicas.is_some_and(|r| r.len() == 1) && others.is_some_and(|s| s.len() == 2)
                },
            )
            .await;
        }
    }

    /// `redis://127.0.0.1:PORT`, `rediss://` with TLS.
    pub fn node_url(&self, port: u16) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{port}")
    }

    /// `redis+sentinel://…/M` (`rediss+sentinel://` with TLS) naming all three sentinels.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinel_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}+sentinel://{}/{MASTER}", hosts.join(","))
    }

    pub fn primary_url(&self) -> String {
        self.node_url(self.primary_port)
    }

    pub fn replica_url(&self) -> String {
        self.node_url(self.replica_port)
    }

    /// SIGKILL the primary (by pid) and wait for it to be gone.
    pub async fn kill_primary(&mut self) {
        if let Some(mut child) = self.primary.take() {
            child.kill().await.unwrap();
        }
    }

    /// Starts the killed primary again (empty, on its port) as a replica of the promoted one, as a
    /// repaired node rejoins: `--redis-ack replicated` needs a replica again.
    pub async fn rejoin_old_primary(&mut self) {
        assert!(self.primary.is_none(), "kill the primary first");
        // A fresh directory: the killed primary had no files worth keeping.
        let mut args = listen(
            server_args(self.primary_port, &self.dir.path().join("rejoined")),
            self.tls,
        );
        args.extend([
            "--replicaof".into(),
            "127.0.0.1".into(),
            self.replica_port.to_string(),
        ]);
        self.primary = Some(spawn(&args));
        let old = self.primary_url();
        wait_until(Duration::from_secs(30), "old primary in sync", || async {
            let info: Option<String> = query(&old, redis::cmd("INFO").arg("replication")).await;
            info.is_some_and(|i| i.contains("master_link_status:up"))
        })
        .await;
    }

    /// Waits until the replica says it is the primary and every sentinel names it.
    pub async fn wait_promoted(&self) {
        let replica = self.replica_url();
        wait_until(Duration::from_secs(60), "replica promoted", || async {
            let role: Option<Vec<redis::Value>> = query(&replica, &redis::cmd("ROLE")).await;
            role.and_then(|r| r.into_iter().next())
                .is_some_and(|v| v == redis::Value::BulkString(b"master".to_vec()))
        })
        .await;
        let want = self.replica_port.to_string();
        for port in &self.sentinel_ports {
            let url = self.node_url(*port);
            wait_until(
                Duration::from_secs(30),
                "sentinels name the new primary",
                || async {
                    let addr: Option<Vec<String>> = query(
                        &url,
                        redis::cmd("SENTINEL")
                            .arg("get-master-addr-by-name")
                            .arg(MASTER),
                    )
                    .await;
                    addr.is_some_and(|a| a.get(1) == Some(&want))
                },
            )
            .await;
        }
    }

    /// The pid of the replica, to stop and continue it.
    pub fn replica_pid(&self) -> u32 {
        self.replica.as_ref().and_then(Child::id).unwrap()
    }
}

/// Sends `signal` (e.g. "STOP", "CONT") to `pid`.
pub fn signal(pid: u32, signal: &str) {
    let ok = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{signal} {pid} failed");
}

/// An `sse-server` node (the binary), killed on drop.
pub struct Node {
    pub base: String,
    _child: Child,
}

impl Node {
    /// Starts `sse-server --redis URL` plus `extra` flags, on an ephemeral port with 1 s heartbeats.
    /// Its log filter is `SSE_TEST_NODE_LOG` when set (e.g. `warn,sse_server::replay::redis=debug`;
    /// every line but INFO is echoed), else `warn`.
    pub async fn start(redis_url: &str, extra: &[&str], env: &[(&str, &str)]) -> Node {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sse-server"));
        cmd.args(["--listen", "127.0.0.1:0", "--redis", redis_url])
            .args(["--publish-token", TOKEN, "--no-demo"])
            .args(["--heartbeat", "1"])
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("SSE_TEST_NODE_LOG").unwrap_or_else(|_| "warn".into()),
            );
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (child, base) = crate::support::spawn_server(cmd, Stdio::null()).await;
        Node {
            base,
            _child: child,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The node's process id (to stop and continue it).
    pub fn pid(&self) -> u32 {
        self._child.id().unwrap()
    }
}

/// Publishes `data` on `channel` through `node`: the status and the JSON answer (status 0: the
/// request itself failed).
pub async fn try_publish(
    client: &reqwest::Client,
    node: &Node,
    channel: &str,
    data: &str,
) -> (u16, serde_json::Value) {
    let sent = tokio::time::timeout(
        WAIT,
        client
            .post(node.url(&format!("/events/{channel}")))
            .bearer_auth(TOKEN)
            .form(&[("data", data)])
            .send(),
    )
    .await;
    let Ok(Ok(resp)) = sent else {
        return (0, serde_json::Value::Null);
    };
    let status = resp.status().as_u16();
    let json = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// The ids (entry ids) in stream `key`, oldest first.
pub async fn stream_ids(url: &str, key: &str) -> Vec<String> {
    let v: Vec<(String, redis::Value)> =
        query(url, redis::cmd("XRANGE").arg(key).arg("-").arg("+"))
            .await
            .expect("XRANGE failed");
    v.into_iter().map(|(id, _)| id).collect()
}

/// A redis-server that speaks only TLS, with the test certificate (self-signed for 127.0.0.1).
pub struct TlsRedis {
    pub port: u16,
    _child: Child,
    _dir: tempfile::TempDir,
}

/// The test certificate (its own CA) and key.
pub fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

impl TlsRedis {
    pub async fn start() -> TlsRedis {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let mut args = server_args(0, dir.path());
        args.extend(
            [
                "--tls-port",
                &port.to_string(),
                "--tls-cert-file",
                &fixture("test-cert.pem"),
                "--tls-key-file",
                &fixture("test-key.pem"),
                "--tls-ca-cert-file",
                &fixture("test-cert.pem"),
                "--tls-auth-clients",
                "no",
            ]
            .map(str::to_owned),
        );
        let child = spawn(&args);
        let probe = {
            let root = std::fs::read(fixture("test-cert.pem")).unwrap();
            redis::Client::build_with_tls(
                format!("rediss://127.0.0.1:{port}"),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root),
                },
            )
            .unwrap()
        };
        wait_until(WAIT, "TLS redis-server answers", || {
            let probe = probe.clone();
            async move {
                let Ok(mut c) = probe.get_multiplexed_async_connection().await else {
                    return false;
                };
                redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok()
            }
        })
        .await;
        TlsRedis {
            port,
            _child: child,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }
}
