//! The kinds of Redis deployment the store connects to, and the connections it gets from them: the
//! one shared connection every command runs on ([`Conn`]), and a dedicated connection for a live-feed
//! read loop, whose `XREAD BLOCK` must not hold up anyone else's commands.
//!
//! * `redis://…`, `rediss://…` ([`Target::Single`]): one server; today's key layout, one sequencer.
//! * `redis+sentinel://h:p[,h:p…]/MASTER`, `rediss+sentinel://…` ([`Target::Sentinel`]): the primary
//!   the sentinels name, found again after a failover; one server's key layout. The shared connection
//!   is dropped on any error (see [`Primary::forget`]) and a read loop asks the sentinels on every
//!   connect.
//! * `redis+cluster://h:p[,h:p…]`, `rediss+cluster://…` ([`Target::Cluster`]): a Redis Cluster. The shared connection is the
//!   `redis` crate's cluster connection, which routes each command by its key's hash slot and follows
//!   `MOVED`/`ASK` redirections and slot-map changes by itself. A read loop connects to the node that
//!   owns its bucket's slot, found by following the `MOVED` it gets from any other node.

use std::time::Duration;

use ::redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use ::redis::cluster::{ClusterClient, ClusterClientBuilder};
use ::redis::cluster_async::ClusterConnection;
use ::redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisFuture, TlsCertificates, Value};

use super::sentinel::{self, Primary, Sentinel};

/// The URL shapes the store accepts, for error messages.
pub(super) const SHAPES: &str = "redis://[user:password@]host:port[/db] (rediss:// for TLS), \
     redis+cluster://[user:password@]host:port[,host:port...] (rediss+cluster:// for TLS), or \
     redis+sentinel://[user:password@]HOST:PORT[,HOST:PORT...]/MASTER_NAME[/DB] \
     (rediss+sentinel:// for TLS)";

/// How the store talks to Redis: the timeouts and, for TLS, the CA to trust.
pub(super) struct Options<'a> {
    /// Connecting, and any command but a replicated append.
    pub(super) timeout: Duration,
    /// The longest a command may take (the timeout plus the `WAIT` of a replicated append).
    pub(super) command: Duration,
    /// PEM CA certificates trusted instead of the system roots for `rediss…` URLs.
    pub(super) root_ca: Option<&'a [u8]>,
}

/// Where the store's Redis is.
pub(super) enum Target {
    /// One server (`redis://`, `rediss://`).
    Single(Client),
    /// Whichever server the sentinels name (`redis+sentinel://`, `rediss+sentinel://`).
    Sentinel(Box<Primary>),
    /// A Redis Cluster (`redis+cluster://`, `rediss+cluster://` with TLS): the client, and one
    /// `redis://` (`rediss://`) URL per seed node (credentials included) from which a read loop starts
    /// looking for its slot's owner.
    Cluster {
        client: Box<ClusterClient>,
        seeds: Vec<String>,
        /// `redis[s]://[user:password@]`, to build the URL of a node a `MOVED` names.
        base: String,
        /// PEM CA certificates trusted for `rediss+cluster://` instead of the system roots.
        root_ca: Option<Vec<u8>>,
    },
}

impl Target {
    /// Parses `url` (see [`SHAPES`]); no connection is made.
    pub(super) fn open(url: &str, opts: &Options<'_>) -> Result<Target, String> {
        if let Some(s) = Sentinel::parse(url)? {
            let s = s.with_root_ca(opts.root_ca.map(<[u8]>::to_vec));
            return Ok(Target::Sentinel(Box::new(Primary::new(s))));
        }
        let (scheme, rest) = match url.split_once("://") {
            Some(("redis+cluster", rest)) => ("redis", rest),
            Some(("rediss+cluster", rest)) => ("rediss", rest),
            _ => {
                return sentinel::open(url, opts.root_ca)
                    .map(Target::Single)
                    .map_err(|e| e.to_string());
            }
        };
        let (auth, hosts) = match rest.rfind('@') {
            Some(at) => (&rest[..=at], &rest[at + 1..]),
            None => ("", rest),
        };
        let hosts = hosts.trim_end_matches('/');
        let base = format!("{scheme}://{auth}");
        let seeds: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| format!("{base}{h}"))
            .collect();
        if seeds.is_empty() || hosts.contains('/') {
            return Err(
                "a cluster URL lists its seed nodes as host:port separated by commas, \
                        with no path"
                    .into(),
            );
        }
        let mut builder = ClusterClientBuilder::new(seeds.clone())
            .connection_timeout(opts.timeout)
            .response_timeout(opts.command)
            .overall_response_timeout(Some(opts.command))
            .retries(6)
            .min_retry_wait(20)
            .max_retry_wait(500);
        if let (Some(pem), "rediss") = (opts.root_ca, scheme) {
            builder = builder.certs(TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.to_vec()),
            });
        }
        let client = builder.build().map_err(|e| e.to_string())?;
        Ok(Target::Cluster {
            client: Box::new(client),
            seeds,
            base,
            root_ca: opts.root_ca.map(<[u8]>::to_vec),
        })
    }

    /// Whether keys must carry hash tags (one slot per bucket).
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Target::Cluster { .. })
    }

    /// The configuration of a one-server shared connection.
    pub(super) fn manager_config(timeout: Duration, command: Duration) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(command))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1))
            .set_number_of_retries(2)
    }

    /// The shared connection (lazy for one server; for a cluster, connects to learn the slot map;
    /// with Sentinel, asks the sentinels unless it has a connection to the primary already).
    pub(super) async fn shared(
        &self,
        timeout: Duration,
        command: Duration,
    ) -> Result<Conn, String> {
        let config = Self::manager_config(timeout, command);
        match self {
            Target::Single(client) => {
                ConnectionManager::new_lazy_with_config(client.clone(), config)
                    .map(Conn::Single)
                    .map_err(|e| e.to_string())
            }
            Target::Sentinel(p) => p.conn(timeout, config).await.map(Conn::Single),
            Target::Cluster { client, .. } => client
                .get_async_connection()
                .await
                .map(Conn::Cluster)
                .map_err(|e| e.to_string()),
        }
    }

    /// After a failed command: with Sentinel, forgets the primary so the next command asks again
    /// (a refused or lost connection, a timeout, `READONLY` from a demoted primary).
    pub(super) async fn failed(&self) {
        if let Target::Sentinel(p) = self {
            p.forget().await;
        }
    }

    /// A dedicated connection for a read loop: to `node` (`host:port`, the owner a `MOVED` named)
    /// when given, else to the server, the primary the sentinels name now, or the `attempt`-th seed
    /// (round robin). Also says which node (`host:port`) it reached in a cluster.
    pub(super) async fn reader(
        &self,
        node: Option<&str>,
        attempt: usize,
        config: &AsyncConnectionConfig,
        timeout: Duration,
    ) -> ::redis::RedisResult<(MultiplexedConnection, Option<String>)> {
        let (client, node) = match (self, node) {
            (Target::Single(client), _) => (client.clone(), None),
            (Target::Sentinel(p), _) => (
                p.sentinel.primary(timeout).await.map_err(|e| {
                    ::redis::RedisError::from(std::io::Error::other(format!(
                        "find the primary: {e}"
                    )))
                })?,
                None,
            ),
            (Target::Cluster { base, root_ca, .. }, Some(node)) => (
                sentinel::open(&format!("{base}{node}"), root_ca.as_deref())?,
                Some(node.to_owned()),
            ),
            (
                Target::Cluster {
                    seeds,
                    base,
                    root_ca,
                    ..
                },
                None,
            ) => {
                let seed = &seeds[attempt % seeds.len()];
                let node = seed.strip_prefix(base.as_str()).map(str::to_owned);
                (sentinel::open(seed, root_ca.as_deref())?, node)
            }
        };
        let conn = client
            .get_multiplexed_async_connection_with_config(config)
            .await?;
        Ok((conn, node))
    }
}

/// The shared connection: every command of the store runs on it.
#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTS: Options<'static> = Options {
        timeout: Duration::from_secs(1),
        command: Duration::from_secs(1),
        root_ca: None,
    };

    #[test]
    fn cluster_urls_are_parsed() {
        let t = Target::open("redis+cluster://:pw@127.0.0.1:7000,127.0.0.1:7001/", &OPTS).unwrap();
        match t {
            Target::Cluster { seeds, base, .. } => {
                assert_eq!(
                    seeds,
                    ["redis://:pw@127.0.0.1:7000", "redis://:pw@127.0.0.1:7001"]
                );
                assert_eq!(base, "redis://:pw@");
            }
            _ => panic!("not a cluster"),
        }
        assert!(Target::open("redis+cluster://", &OPTS).is_err());
        match Target::open("rediss+cluster://h:1", &OPTS) {
            Ok(Target::Cluster { base, .. }) => assert_eq!(base, "rediss://"),
            _ => panic!("not a TLS cluster"),
        }
        assert!(matches!(
            Target::open("redis+sentinel://h:1/m", &OPTS),
            Ok(Target::Sentinel(_))
        ));
        assert!(Target::open("redis+cluster://h:1/0", &OPTS).is_err());
        assert!(Target::open("redis://127.0.0.1", &OPTS).is_ok_and(|t| !t.is_cluster()));
    }
}
