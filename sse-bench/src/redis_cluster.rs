//! Redis for the `--redis-cluster N` benchmark: one plain `redis-server`, or a Redis Cluster of N
//! primaries (no replicas), each a `redis-server --cluster-enabled yes` on loopback started here.
//!
//! The cluster is formed the same way for every N (so N = 1 and N = 2 work, which `redis-cli
//! --cluster create` refuses): each node gets a distinct config epoch and an even share of the 16,384
//! slots (`CLUSTER ADDSLOTSRANGE`), then the first node meets the others, and the cluster is ready once
//! every node reports `cluster_state:ok` and knows all N.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Error;
use crate::procfs;

/// Hash slots of a Redis Cluster.
const SLOTS: usize = 16_384;

/// Running redis-server processes, killed (and their directory removed) on drop.
#[derive(Debug)]
pub struct Redis {
    children: Vec<Child>,
    addrs: Vec<SocketAddr>,
    cluster: bool,
    dir: PathBuf,
}

impl Redis {
    /// One plain `redis-server` (no cluster): `--redis redis://…`.
    pub fn plain() -> Result<Redis, Error> {
        let mut redis = Redis::empty(false)?;
        redis.spawn_node(&[])?;
        Ok(redis)
    }

    /// A Redis Cluster of `primaries` nodes, slots spread evenly, ready to serve.
    pub fn cluster(primaries: usize) -> Result<Redis, Error> {
        if primaries == 0 {
            return Err(Error::Usage(
                "--redis-cluster needs at least 1 primary".into(),
            ));
        }
        let mut redis = Redis::empty(true)?;
        let mut buses = Vec::with_capacity(primaries);
        for i in 0..primaries {
            // An explicit bus port: the default (port + 10000) overflows for ephemeral ports.
            let bus = free_port()?;
            buses.push(bus.to_string());
            let conf = redis.dir.join(format!("nodes-{i}.conf"));
            let conf = conf.display().to_string();
            redis.spawn_node(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &conf,
                "--cluster-port",
                &bus.to_string(),
                "--cluster-node-timeout",
                "5000",
            ])?;
        }
        for (i, addr) in redis.addrs.iter().enumerate() {
            command(
                *addr,
                &["CLUSTER", "SET-CONFIG-EPOCH", &(i + 1).to_string()],
            )?;
            let (first, last) = (SLOTS * i / primaries, SLOTS * (i + 1) / primaries - 1);
            command(
                *addr,
                &[
                    "CLUSTER",
                    "ADDSLOTSRANGE",
                    &first.to_string(),
                    &last.to_string(),
                ],
            )?;
        }
        let first = redis.addrs[0];
        for (addr, bus) in redis.addrs.iter().zip(&buses).skip(1) {
            let (ip, port) = (addr.ip().to_string(), addr.port().to_string());
            command(first, &["CLUSTER", "MEET", &ip, &port, bus])?;
        }
        redis.wait_until_formed(Duration::from_secs(30))?;
        Ok(redis)
    }

    fn empty(cluster: bool) -> Result<Redis, Error> {
        let dir = std::env::temp_dir().join(format!(
            "sse-bench-redis-{}-{}",
            std::process::id(),
            crate::load::now_us()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Redis {
            children: Vec::new(),
            addrs: Vec::new(),
            cluster,
            dir,
        })
    }

    /// Starts one redis-server on a free loopback port with `extra` arguments and waits for PONG.
    fn spawn_node(&mut self, extra: &[&str]) -> Result<(), Error> {
        let port = free_port()?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .arg("--dir")
            .arg(&self.dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                Error::Server(format!(
                    "cannot start redis-server ({e}); install it (apt-get install redis-server) for --redis-cluster"
                ))
            })?;
        self.children.push(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        self.addrs.push(addr);
        if crate::cluster::wait_for_pong(addr, Duration::from_secs(10)) {
            Ok(())
        } else {
            Err(Error::Server(format!(
                "redis-server on {addr} did not answer PING"
            )))
        }
    }

    fn wait_until_formed(&self, within: Duration) -> Result<(), Error> {
        let n = self.addrs.len();
        let deadline = Instant::now() + within;
        loop {
            let mut last = String::new();
            let formed = self
                .addrs
                .iter()
                .all(|addr| match command(*addr, &["CLUSTER", "INFO"]) {
                    Ok(info) => {
                        let ok = info.contains("cluster_state:ok")
                            && info.contains(&format!("cluster_known_nodes:{n}\r"))
                            && info.contains(&format!("cluster_slots_assigned:{SLOTS}\r"));
                        if !ok {
                            last = info;
                        }
                        ok
                    }
                    Err(e) => {
                        last = e.to_string();
                        false
                    }
                });
            if formed {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Server(format!(
                    "the Redis Cluster of {n} primaries did not form within {within:?}: {last}"
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The `--redis` URL of sse-server for these servers.
    ///
    /// `redis://HOST:PORT` for a plain server, `redis+cluster://HOST:PORT,HOST:PORT…` (every
    /// primary as a seed) for a cluster.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.addrs.iter().map(SocketAddr::to_string).collect();
        if self.cluster {
            format!("redis+cluster://{}", hosts.join(","))
        } else {
            format!("redis://{}", hosts.join(","))
        }
    }

    /// Primaries (1 for a plain server).
    pub fn primaries(&self) -> usize {
        self.addrs.len()
    }

    /// Microseconds every redis-server together spent in the commands `names` (lowercase, e.g.
    /// `evalsha`, `xread`) so far, from `INFO commandstats`; None if a server does not answer.
    pub fn command_usec(&self, names: &[&str]) -> Option<u64> {
        let usec = |info: &str, name: &str| {
            let field = format!("cmdstat_{name}:");
            info.lines()
                .find_map(|l| l.strip_prefix(&field))
                .and_then(|stats| {
                    stats
                        .split(',')
                        .find_map(|kv| kv.strip_prefix("usec="))
                        .and_then(|v| v.parse::<u64>().ok())
                })
                .unwrap_or(0)
        };
        self.addrs
            .iter()
            .map(|addr| {
                let info = command(*addr, &["INFO", "commandstats"]).ok()?;
                Some(names.iter().map(|n| usec(&info, n)).sum::<u64>())
            })
            .sum()
    }

    /// CPU time of every redis-server together so far; None if `/proc` cannot be read.
    pub fn cpu(&self) -> Option<Duration> {
        self.children
            .iter()
            .map(|c| procfs::sample(c.id()).ok().map(|s| s.cpu))
            .sum()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> Result<u16, Error> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Sends one command (RESP array of bulk strings) on a fresh connection and returns the reply as
/// text: a simple string, an integer or a bulk string; an error reply becomes [`Error::Server`].
///
/// ```no_run
/// let addr = "127.0.0.1:6379".parse().unwrap();
/// assert_eq!(sse_bench::redis_cluster::command(addr, &["PING"]).unwrap(), "PONG");
/// ```
pub fn command(addr: SocketAddr, args: &[&str]) -> Result<String, Error> {
    let mut request = format!("*{}\r\n", args.len());
    for a in args {
        request.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    (&stream).write_all(request.as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end();
    let failed = |what: &str| {
        Error::Server(format!(
            "redis {addr} answered `{what}` to {}",
            args.join(" ")
        ))
    };
    match line.split_at_checked(1) {
        Some(("+" | ":", rest)) => Ok(rest.to_owned()),
        Some(("$", len)) => {
            let len: usize = len.parse().map_err(|_| failed(line))?;
            let mut body = vec![0u8; len + 2];
            reader.read_exact(&mut body)?;
            body.truncate(len);
            Ok(String::from_utf8_lossy(&body).into_owned())
        }
        _ => Err(failed(line)),
    }
}
