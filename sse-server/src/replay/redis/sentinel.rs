//! Redis Sentinel: finding the primary through the sentinels, and finding it again after a failover.
//!
//! `redis+sentinel://[user:password@]HOST:PORT[,HOST:PORT...]/MASTER_NAME[/DB]` (and `rediss+sentinel://`
//! for TLS to the sentinels and the primary). The credentials and the database are the primary's; the
//! sentinels are asked without them. The primary is asked (`SENTINEL get-master-addr-by-name`) of each
//! sentinel in turn, and only taken once it says `ROLE` master itself: right after a failover a
//! sentinel may still name the dead or demoted node. The command connection is dropped on any error
//! (connection refused or lost, timeout, `READONLY` from a demoted primary), so the next command
//! finds the primary again; the live feed's read loop finds it on every reconnect.

use std::fmt;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{AsyncConnectionConfig, Client, Value};
use tokio::sync::Mutex;

use super::entry::{items, text};

/// Default port of a sentinel.
const SENTINEL_PORT: u16 = 26379;

/// Where the sentinels are, which primary they watch, and how to reach it.
pub(super) struct Sentinel {
    tls: bool,
    /// `host:port` of each sentinel (IPv6 hosts in brackets).
    sentinels: Vec<String>,
    master: String,
    /// `user:password@` as written in the URL (still percent-encoded), or empty.
    auth: String,
    db: String,
    root_ca: Option<Vec<u8>>,
}

impl fmt::Debug for Sentinel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sentinel")
            .field("sentinels", &self.sentinels)
            .field("master", &self.master)
            .finish_non_exhaustive()
    }
}

/// The shapes a Sentinel URL may take, for error messages.
const SHAPE: &str = "redis+sentinel://[user:password@]HOST:PORT[,HOST:PORT...]/MASTER_NAME[/DB] \
                     (rediss+sentinel:// for TLS)";

impl Sentinel {
    /// `Ok(None)`: not a Sentinel URL; `Err`: a Sentinel URL that cannot be used (why).
    pub(super) fn parse(url: &str) -> Result<Option<Sentinel>, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("redis+sentinel://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("rediss+sentinel://") {
            (true, r)
        } else {
            return Ok(None);
        };
        let bad = |why: &str| Err(format!("{why}; write it as {SHAPE}"));
        if rest.contains(['?', '#']) {
            return bad("query parameters are not supported");
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (auth, hosts) = match authority.rsplit_once('@') {
            Some((a, h)) => (format!("{a}@"), h),
            None => (String::new(), authority),
        };
        let mut sentinels = Vec::new();
        for host in hosts.split(',') {
            let host = host.trim();
            let (name, port) = match host.rsplit_once(':') {
                Some((n, p)) if !n.is_empty() && !p.contains(']') => match p.parse::<u16>() {
                    Ok(p) => (n, p),
                    Err(_) => return bad(&format!("{host:?} has no valid port")),
                },
                _ if !host.is_empty() => (host, SENTINEL_PORT),
                _ => return bad("a sentinel address is empty"),
            };
            sentinels.push(format!("{name}:{port}"));
        }
        let (master, db) = path.split_once('/').unwrap_or((path, "0"));
        if master.is_empty() {
            return bad("the master name is missing");
        }
        let db = if db.is_empty() { "0" } else { db };
        if db.parse::<u32>().is_err() {
            return bad(&format!("database {db:?} is not a number"));
        }
        Ok(Some(Sentinel {
            tls,
            sentinels,
            master: master.to_owned(),
            auth,
            db: db.to_owned(),
            root_ca: None,
        }))
    }

    /// Trusts `pem` (CA certificates) instead of the system roots for TLS.
    pub(super) fn with_root_ca(mut self, pem: Option<Vec<u8>>) -> Self {
        self.root_ca = pem;
        self
    }

    fn client(&self, url: &str) -> Result<Client, String> {
        open(url, self.root_ca.as_deref()).map_err(|e| e.to_string())
    }

    /// Asks the sentinels for the primary and checks it says so itself; every step within `timeout`.
    pub(super) async fn primary(&self, timeout: Duration) -> Result<Client, String> {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let mut why = Vec::new();
        for sentinel in &self.sentinels {
            let found = async {
                let mut conn = self
                    .client(&format!("{scheme}://{sentinel}"))?
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(|e| e.to_string())?;
                let addr: Value = ::redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&self.master)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                let (host, port) = match items(&addr) {
                    [h, p] => (text(h).unwrap_or_default(), text(p).unwrap_or_default()),
                    _ => return Err(format!("does not know master {:?}", self.master)),
                };
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host
                };
                let url = format!("{scheme}://{}{host}:{port}/{}", self.auth, self.db);
                let client = self.client(&url)?;
                let mut primary = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(|e| format!("primary {host}:{port}: {e}"))?;
                let role: Value = ::redis::cmd("ROLE")
                    .query_async(&mut primary)
                    .await
                    .map_err(|e| format!("primary {host}:{port}: {e}"))?;
                match items(&role).first().and_then(text).as_deref() {
                    Some("master") => Ok(client),
                    other => Err(format!(
                        "{host}:{port} is not a primary yet (role {other:?}): failover in progress"
                    )),
                }
            };
            match tokio::time::timeout(timeout, found).await {
                Ok(Ok(client)) => return Ok(client),
                Ok(Err(e)) => why.push(format!("sentinel {sentinel}: {e}")),
                Err(_) => why.push(format!("sentinel {sentinel}: timed out")),
            }
        }
        Err(why.join("; "))
    }
}

/// A client for `url`, trusting `root_ca` (PEM) instead of the system roots when given.
pub(super) fn open(url: &str, root_ca: Option<&[u8]>) -> ::redis::RedisResult<Client> {
    match root_ca {
        Some(pem) if url.starts_with("rediss://") => Client::build_with_tls(
            url,
            ::redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.to_vec()),
            },
        ),
        _ => Client::open(url),
    }
}

/// The command connection to the primary the sentinels name, found again after it fails.
pub(super) struct Primary {
    pub(super) sentinel: Sentinel,
    current: Mutex<Option<ConnectionManager>>,
}

impl Primary {
    pub(super) fn new(sentinel: Sentinel) -> Self {
        Primary {
            sentinel,
            current: Mutex::new(None),
        }
    }

    /// The connection to the current primary, asking the sentinels when there is none.
    pub(super) async fn conn(
        &self,
        timeout: Duration,
        config: ConnectionManagerConfig,
    ) -> Result<ConnectionManager, String> {
        // Held while asking, so concurrent commands wait for one discovery instead of each asking.
        let mut current = self.current.lock().await;
        if let Some(conn) = &*current {
            return Ok(conn.clone());
        }
        let client = self.sentinel.primary(timeout).await?;
        let conn =
            ConnectionManager::new_lazy_with_config(client, config).map_err(|e| e.to_string())?;
        *current = Some(conn.clone());
        Ok(conn)
    }

    /// Drops the connection after an error, so the next command asks the sentinels again.
    pub(super) async fn forget(&self) {
        *self.current.lock().await = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sentinel_urls() {
        let s = Sentinel::parse("redis+sentinel://:pw@127.0.0.1:1,[::1]:2,h/mymaster/3")
            .unwrap()
            .unwrap();
        assert!(!s.tls);
        assert_eq!(s.sentinels, ["127.0.0.1:1", "[::1]:2", "h:26379"]);
        assert_eq!(s.master, "mymaster");
        assert_eq!(s.auth, ":pw@");
        assert_eq!(s.db, "3");
        let s = Sentinel::parse("rediss+sentinel://h:5/m").unwrap().unwrap();
        assert!(s.tls);
        assert_eq!(s.db, "0");
        assert!(Sentinel::parse("redis://h:1").unwrap().is_none());
        for bad in [
            "redis+sentinel://h:1",
            "redis+sentinel://h:1/",
            "redis+sentinel://h:x/m",
            "redis+sentinel://h:1,/m",
            "redis+sentinel://h:1/m/x",
            "redis+sentinel://h:1/m?a=b",
        ] {
            let e = Sentinel::parse(bad).unwrap_err();
            assert!(e.contains("redis+sentinel://"), "{bad}: {e}");
        }
    }
}
