//! The kinds of Redis deployment the store connects to, and the connections it gets from them: the
//! one shared connection every command runs on ([`Conn`]), and a dedicated connection for a live-feed
//! read loop, whose `XREAD BLOCK` must not hold up anyone else's commands.
//!
//! * `redis://…` ([`Target::Single`]): one server; today's key layout, one sequencer.
//! * `redis+cluster://h:p[,h:p…]` ([`Target::Cluster`]): a Redis Cluster. The shared connection is the
//!   `redis` crate's cluster connection, which routes each command by its key's hash slot and follows
//!   `MOVED`/`ASK` redirections and slot-map changes by itself. A read loop connects to the node that
//!   owns its bucket's slot, found by following the `MOVED` it gets from any other node.

use std::time::Duration;

use ::redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use ::redis::cluster::{ClusterClient, ClusterClientBuilder};
use ::redis::cluster_async::ClusterConnection;
use ::redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisFuture, Value};

/// The URL shapes the store accepts, for error messages.
pub(super) const SHAPES: &str = "redis://[user:password@]host:port[/db] or \
     redis+cluster://[user:password@]host:port[,host:port...]";

/// Where the store's Redis is.
pub(super) enum Target {
    /// One server (`redis://`).
    Single(Client),
    /// A Redis Cluster (`redis+cluster://`): the client, and one plain `redis://` URL per seed node
    /// (credentials included) from which a read loop starts looking for its slot's owner.
    Cluster {
        client: Box<ClusterClient>,
        seeds: Vec<String>,
        /// `redis://[user:password@]`, to build the URL of a node a `MOVED` names.
        base: String,
    },
}

impl Target {
    /// Parses `url` (see [`SHAPES`]); no connection is made.
    pub(super) fn open(url: &str, timeout: Duration) -> Result<Target, String> {
        let Some(rest) = url.strip_prefix("redis+cluster://") else {
            if url.starts_with("rediss+cluster://") {
                return Err(
                    "TLS to a Redis Cluster (rediss+cluster://) is not supported by this \
                            build yet; use redis+cluster:// on a trusted network"
                        .into(),
                );
            }
            return Client::open(url)
                .map(Target::Single)
                .map_err(|e| e.to_string());
        };
        let (auth, hosts) = match rest.rfind('@') {
            Some(at) => (&rest[..=at], &rest[at + 1..]),
            None => ("", rest),
        };
        let hosts = hosts.trim_end_matches('/');
        let base = format!("redis://{auth}");
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
        let client = ClusterClientBuilder::new(seeds.clone())
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .overall_response_timeout(Some(timeout))
            .retries(6)
            .min_retry_wait(20)
            .max_retry_wait(500)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Target::Cluster {
            client: Box::new(client),
            seeds,
            base,
        })
    }

    /// Whether keys must carry hash tags (one slot per bucket).
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Target::Cluster { .. })
    }

    /// The shared connection (lazy for one server; for a cluster, connects to learn the slot map).
    pub(super) async fn shared(&self, timeout: Duration) -> ::redis::RedisResult<Conn> {
        match self {
            Target::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_secs(1))
                    .set_number_of_retries(2);
                ConnectionManager::new_lazy_with_config(client.clone(), config).map(Conn::Single)
            }
            Target::Cluster { client, .. } => {
                Ok(Conn::Cluster(client.get_async_connection().await?))
            }
        }
    }

    /// A dedicated connection for a read loop: to `node` (`host:port`, the owner a `MOVED` named)
    /// when given, else to the server or the `attempt`-th seed (round robin). Also says which node
    /// (`host:port`) it reached in a cluster.
    pub(super) async fn reader(
        &self,
        node: Option<&str>,
        attempt: usize,
        config: &AsyncConnectionConfig,
    ) -> ::redis::RedisResult<(MultiplexedConnection, Option<String>)> {
        let (client, node) = match (self, node) {
            (Target::Single(client), _) => (client.clone(), None),
            (Target::Cluster { base, .. }, Some(node)) => (
                Client::open(format!("{base}{node}"))?,
                Some(node.to_owned()),
            ),
            (Target::Cluster { seeds, base, .. }, None) => {
                let seed = &seeds[attempt % seeds.len()];
                let node = seed.strip_prefix(base.as_str()).map(str::to_owned);
                (Client::open(seed.as_str())?, node)
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

    #[test]
    fn cluster_urls_are_parsed() {
        let t = Target::open(
            "redis+cluster://:pw@127.0.0.1:7000,127.0.0.1:7001/",
            Duration::from_secs(1),
        )
        .unwrap();
        match t {
            Target::Cluster { seeds, base, .. } => {
                assert_eq!(
                    seeds,
                    ["redis://:pw@127.0.0.1:7000", "redis://:pw@127.0.0.1:7001"]
                );
                assert_eq!(base, "redis://:pw@");
            }
            Target::Single(_) => panic!("not a cluster"),
        }
        assert!(Target::open("redis+cluster://", Duration::from_secs(1)).is_err());
        assert!(Target::open("redis+cluster://h:1/0", Duration::from_secs(1)).is_err());
        assert!(
            Target::open("redis://127.0.0.1", Duration::from_secs(1))
                .is_ok_and(|t| !t.is_cluster())
        );
    }
}
