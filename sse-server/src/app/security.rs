//! Flags for authorization (JWT, public channels) and connection limits.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use sse_server::{Auth, Error, JwtKey, Limits};

/// Authorization and limits (see SECURITY.md).
#[derive(Debug, Args)]
pub(crate) struct SecurityArgs {
    /// Verify JWTs signed with HS256 and this shared secret: subscribers then need a token granting the
    /// channel (claim {"sse":{"subscribe":[...],"publish":[...]}}), except on public channels.
    #[arg(
        long,
        env = "SSE_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true,
        conflicts_with = "jwt_public_key"
    )]
    pub(crate) jwt_secret: Option<String>,

    /// Verify JWTs with this PEM public key (RS256 or ES256, see --jwt-algorithm).
    #[arg(long, env = "SSE_JWT_PUBLIC_KEY", value_name = "FILE")]
    pub(crate) jwt_public_key: Option<PathBuf>,

    /// Algorithm of --jwt-public-key.
    #[arg(long, env = "SSE_JWT_ALGORITHM", value_enum, default_value_t = JwtAlgorithm::Rs256)]
    pub(crate) jwt_algorithm: JwtAlgorithm,

    /// Cookie that may carry a subscriber's JWT (besides Authorization: Bearer and ?access_token=).
    #[arg(long, env = "SSE_JWT_COOKIE", default_value = sse_server::DEFAULT_COOKIE, value_name = "NAME")]
    pub(crate) jwt_cookie: String,

    /// Channels anyone may subscribe to without a token when JWTs are on: a name, `prefix/*` or `*`
    /// (repeatable; comma-separated in the env var). Giving it without a JWT key closes every other channel.
    #[arg(
        long = "public-channel",
        env = "SSE_PUBLIC_CHANNEL",
        value_name = "PATTERN",
        value_delimiter = ','
    )]
    pub(crate) public_channel: Vec<String>,

    /// Open connections at most; beyond it new ones get 503 with Retry-After.
    #[arg(
        long,
        env = "SSE_MAX_CONNECTIONS",
        default_value_t = 10_000,
        value_name = "N"
    )]
    pub(crate) max_connections: usize,

    /// Open connections per client IP at most; beyond it new ones get 429 with Retry-After.
    #[arg(
        long,
        env = "SSE_MAX_CONNECTIONS_PER_IP",
        default_value_t = 256,
        value_name = "N"
    )]
    pub(crate) max_connections_per_ip: usize,

    /// Event streams open at once on one connection at most (HTTP/2 multiplexes many); beyond it a
    /// subscription gets 429 with Retry-After.
    #[arg(
        long,
        env = "SSE_MAX_SUBSCRIPTIONS_PER_CONNECTION",
        default_value_t = 100,
        value_name = "N"
    )]
    pub(crate) max_subscriptions_per_connection: usize,

    /// Event streams open at once from one client IP at most, over all its connections; beyond it a
    /// subscription gets 429 with Retry-After.
    #[arg(
        long,
        env = "SSE_MAX_SUBSCRIPTIONS_PER_IP",
        default_value_t = 1000,
        value_name = "N"
    )]
    pub(crate) max_subscriptions_per_ip: usize,

    /// Reverse proxies (CIDR like 10.0.0.0/8, or one address) whose X-Forwarded-For is believed: their
    /// connections count only towards --max-connections, and each request through them counts towards
    /// --max-connections-per-ip of the client it names (repeatable; comma-separated in the env var).
    #[arg(
        long = "trusted-proxy",
        env = "SSE_TRUSTED_PROXY",
        value_name = "CIDR",
        value_delimiter = ',',
        value_parser = parse_cidr
    )]
    pub(crate) trusted_proxy: Vec<(IpAddr, u8)>,

    /// Seconds a client has to send its request headers; idle keep-alive connections close after it too.
    #[arg(
        long,
        env = "SSE_HEADER_READ_TIMEOUT",
        default_value_t = 10,
        value_name = "SECS"
    )]
    pub(crate) header_read_timeout: u64,

    /// Seconds a publisher has to send its request body once the headers are in; a slower (or endless)
    /// body gets 408 and the connection is closed.
    #[arg(
        long,
        env = "SSE_BODY_TIMEOUT",
        default_value_t = 10,
        value_name = "SECS",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub(crate) body_timeout: u64,

    /// Largest request head (request line + headers) in bytes; bigger gets 431.
    #[arg(long, env = "SSE_MAX_HEADER_BYTES", default_value_t = 32 * 1024, value_name = "N")]
    pub(crate) max_header_bytes: usize,

    /// Live channels at most (subscribing or publishing to one more gets 503).
    #[arg(
        long,
        env = "SSE_MAX_CHANNELS",
        default_value_t = 10_000,
        value_name = "N"
    )]
    pub(crate) max_channels: usize,

    /// Channels and `prefix/*` patterns one `GET /events?channel=...` stream may follow (more gets 400).
    #[arg(
        long,
        env = "SSE_MAX_CHANNELS_PER_SUBSCRIPTION",
        default_value_t = 64,
        value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub(crate) max_channels_per_subscription: u64,
}

/// Signature algorithm of a public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum JwtAlgorithm {
    /// RSA PKCS#1 v1.5 with SHA-256.
    Rs256,
    /// ECDSA P-256 with SHA-256.
    Es256,
}

impl SecurityArgs {
    /// The authorization to apply, when any JWT or public-channel flag is given.
    pub(crate) fn auth(&self) -> Result<Option<Auth>, Error> {
        let key = match (&self.jwt_secret, &self.jwt_public_key) {
            (Some(secret), _) => Some(JwtKey::hs256(secret)),
            (None, Some(path)) => {
                let pem = std::fs::read(path).map_err(|e| {
                    Error::AuthConfig(format!(
                        "cannot read --jwt-public-key {}: {e}",
                        path.display()
                    ))
                })?;
                Some(match self.jwt_algorithm {
                    JwtAlgorithm::Rs256 => JwtKey::rs256_pem(&pem)?,
                    JwtAlgorithm::Es256 => JwtKey::es256_pem(&pem)?,
                })
            }
            (None, None) => None,
        };
        if key.is_none() && self.public_channel.is_empty() {
            return Ok(None);
        }
        let mut builder = Auth::builder().cookie_name(self.jwt_cookie.clone());
        if let Some(key) = key {
            builder = builder.key(key);
        }
        for pattern in &self.public_channel {
            builder = builder.public_channel(pattern);
        }
        Ok(Some(builder.build()))
    }

    /// The connection limits.
    pub(crate) fn limits(&self) -> Limits {
        let mut limits = Limits::default()
            .max_connections(self.max_connections)
            .max_connections_per_ip(self.max_connections_per_ip)
            .max_subscriptions_per_connection(self.max_subscriptions_per_connection)
            .max_subscriptions_per_ip(self.max_subscriptions_per_ip)
            .header_read_timeout(Duration::from_secs(self.header_read_timeout.max(1)))
            .max_header_bytes(self.max_header_bytes);
        for &(network, prefix) in &self.trusted_proxy {
            limits = limits.trusted_proxy(network, prefix);
        }
        limits
    }
}

/// `ADDR/PREFIX` or a single `ADDR` (a /32 or /128).
fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let s = s.trim();
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IP address; write a network as 10.0.0.0/8"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("prefix length {p:?} must be a number from 0 to {max}"))?,
    };
    Ok((addr, prefix))
}

#[cfg(test)]
mod tests {
    use super::parse_cidr;

    #[test]
    fn parses_networks_and_single_addresses() {
        assert_eq!(
            parse_cidr("10.0.0.0/8").unwrap(),
            ("10.0.0.0".parse().unwrap(), 8)
        );
        assert_eq!(
            parse_cidr("127.0.0.1").unwrap(),
            ("127.0.0.1".parse().unwrap(), 32)
        );
        assert_eq!(parse_cidr("::1").unwrap(), ("::1".parse().unwrap(), 128));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("example.com/8").is_err());
        assert!(parse_cidr("10.0.0.0/x").is_err());
    }
}
