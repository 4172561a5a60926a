//! Authorization with JSON Web Tokens: which channels a request may subscribe to or publish on.
//!
//! A token is a JWT signed with HS256 (shared secret), RS256 (RSA key pair) or ES256 (P-256 key pair).
//! Its claims name the channels it grants:
//!
//! ```json
//! {
//!   "sub": "user-42",
//!   "exp": 1767225600,
//!   "sse": {
//!     "subscribe": ["news", "users/42/*"],
//!     "publish": ["users/42/*"]
//!   }
//! }
//! ```
//!
//! * A pattern is an exact channel name, `prefix/*` (every channel whose name starts with `prefix/`, at
//!   any depth, but not `prefix` itself), or `*` (every channel).
//! * `exp` (seconds since the Unix epoch) is required by default and enforced with no leeway: an expired
//!   token is refused with 401, and a stream opened with a token ends when the token expires, after an
//!   in-band [`EXPIRED_EVENT`](crate::hub::control::EXPIRED_EVENT) (`sse-expired`) event, so the client can reconnect with a fresh token and
//!   resume from its `Last-Event-ID`.
//! * Broadcasting (`POST /events`) needs `*` in `publish`.
//!
//! Subscribers present the token in the `Authorization: Bearer` header, a cookie (default name
//! `sse_token`, for browsers on the same site) or the `access_token` query parameter (for `EventSource`,
//! which cannot set headers). Publishers present it in the `Authorization` header only: a cookie would
//! let any page the user visits publish in their name (CSRF), and query strings end up in logs.
//!
//! Public channels ([`AuthBuilder::public_channel`]) can be subscribed to without a token.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::error::Error;
use crate::http::query::query_param;
use crate::http::token::{bearer, cookie};

/// The default name of the cookie that may carry a subscriber's token.
pub const DEFAULT_COOKIE: &str = "sse_token";

/// A channel pattern of a token's claims or of the public channel list.
///
/// ```
/// use sse_server::ChannelPattern;
/// assert!(ChannelPattern::new("news").matches("news"));
/// assert!(ChannelPattern::new("users/42/*").matches("users/42/inbox"));
/// assert!(ChannelPattern::new("users/42/*").matches("users/42/a/b"));
/// assert!(!ChannelPattern::new("users/42/*").matches("users/42"));
/// assert!(!ChannelPattern::new("users/42/*").matches("users/420/inbox"));
/// assert!(ChannelPattern::new("*").matches("anything"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelPattern {
    /// `*`: every channel.
    Any,
    /// `prefix/*`: channels starting with `prefix/` (the field holds `prefix/`).
    Prefix(String),
    /// One channel.
    Exact(String),
}

impl ChannelPattern {
    /// Parses a pattern: `*`, `prefix/*` or an exact name.
    ///
    /// ```
    /// assert_eq!(sse_server::ChannelPattern::new("a/*"), sse_server::ChannelPattern::Prefix("a/".into()));
    /// ```
    pub fn new(pattern: &str) -> ChannelPattern {
        if pattern == "*" {
            ChannelPattern::Any
        } else if let Some(prefix) = pattern.strip_suffix('*')
            && prefix.ends_with('/')
        {
            ChannelPattern::Prefix(prefix.to_owned())
        } else {
            ChannelPattern::Exact(pattern.to_owned())
        }
    }

    /// True when `channel` is covered by this pattern.
    ///
    /// ```
    /// assert!(!sse_server::ChannelPattern::new("news").matches("news/x"));
    /// ```
    pub fn matches(&self, channel: &str) -> bool {
        match self {
            ChannelPattern::Any => true,
            ChannelPattern::Prefix(p) => channel.len() > p.len() && channel.starts_with(p.as_str()),
            ChannelPattern::Exact(name) => name == channel,
        }
    }
}

impl ChannelPattern {
    /// True when every channel `entry` stands for is covered: for a channel name, [`matches`](ChannelPattern::matches);
    /// for a `prefix/*` subscription pattern, only a grant covering all of it (`*`, or a
    /// `p/*` with `prefix/` under `p/`): grant `users/*` covers `users/*`, `users/1/*` and `users/1`;
    /// grant `users/1` does not cover `users/*`.
    ///
    /// ```
    /// use sse_server::ChannelPattern;
    /// assert!(ChannelPattern::new("users/*").covers("users/1/*"));
    /// assert!(!ChannelPattern::new("users/1").covers("users/*"));
    /// ```
    pub fn covers(&self, entry: &str) -> bool {
        let Some(base) = entry.strip_suffix('*').filter(|b| b.ends_with('/')) else {
            return self.matches(entry);
        };
        match self {
            ChannelPattern::Any => true,
            ChannelPattern::Prefix(p) => base.starts_with(p.as_str()),
            ChannelPattern::Exact(_) => false,
        }
    }
}

/// A key that verifies token signatures.
///
/// ```
/// let _hs = sse_server::JwtKey::hs256(b"a long random shared secret");
/// assert!(sse_server::JwtKey::rs256_pem(b"not a key").is_err());
/// ```
#[derive(Clone)]
pub struct JwtKey {
    key: DecodingKey,
    algorithm: Algorithm,
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl JwtKey {
    /// HS256 with a shared secret (use at least 32 random bytes).
    ///
    /// ```
    /// let _ = sse_server::JwtKey::hs256("secret-of-at-least-32-random-bytes!");
    /// ```
    pub fn hs256(secret: impl AsRef<[u8]>) -> JwtKey {
        JwtKey {
            key: DecodingKey::from_secret(secret.as_ref()),
            algorithm: Algorithm::HS256,
        }
    }

    /// RS256 with an RSA public key in PEM (`-----BEGIN PUBLIC KEY-----` or `BEGIN RSA PUBLIC KEY`).
    ///
    /// ```
    /// assert!(sse_server::JwtKey::rs256_pem(b"-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n").is_err());
    /// ```
    pub fn rs256_pem(pem: &[u8]) -> Result<JwtKey, Error> {
        let key = DecodingKey::from_rsa_pem(pem).map_err(|e| {
            Error::AuthConfig(format!(
                "the RS256 key is not an RSA public key in PEM ({e}); give the file with BEGIN PUBLIC KEY"
            ))
        })?;
        Ok(JwtKey {
            key,
            algorithm: Algorithm::RS256,
        })
    }

    /// ES256 with a P-256 public key in PEM (`-----BEGIN PUBLIC KEY-----`).
    ///
    /// ```
    /// assert!(sse_server::JwtKey::es256_pem(b"garbage").is_err());
    /// ```
    pub fn es256_pem(pem: &[u8]) -> Result<JwtKey, Error> {
        let key = DecodingKey::from_ec_pem(pem).map_err(|e| {
            Error::AuthConfig(format!(
                "the ES256 key is not a P-256 public key in PEM ({e}); give the file with BEGIN PUBLIC KEY"
            ))
        })?;
        Ok(JwtKey {
            key,
            algorithm: Algorithm::ES256,
        })
    }

    /// The algorithm tokens must be signed with (tokens naming another one are refused).
    ///
    /// ```
    /// assert_eq!(sse_server::JwtKey::hs256("s").algorithm(), "HS256");
    /// ```
    pub fn algorithm(&self) -> &'static str {
        match self.algorithm {
            Algorithm::HS256 => "HS256",
            Algorithm::RS256 => "RS256",
            Algorithm::ES256 => "ES256",
            _ => "other",
        }
    }
}

/// Who may subscribe to and publish on which channel; give it to
/// [`HubService::authorization`](crate::http::service::HubService::authorization).
///
/// ```
/// use sse_server::{Auth, JwtKey};
/// let auth = Auth::builder()
///     .key(JwtKey::hs256("secret-of-at-least-32-random-bytes!"))
///     .public_channel("news")
///     .public_channel("status/*")
///     .build();
/// assert!(auth.is_public("status/db"));
/// assert!(!auth.is_public("private"));
/// ```
#[derive(Debug, Clone)]
pub struct Auth {
    key: Option<JwtKey>,
    public: Vec<ChannelPattern>,
    cookie: String,
    require_exp: bool,
    leeway: Duration,
}

/// Configures an [`Auth`].
///
/// ```
/// let _ = sse_server::Auth::builder().cookie_name("token").require_exp(false).build();
/// ```
#[derive(Debug, Clone)]
#[must_use = "call .build() to get the Auth"]
pub struct AuthBuilder {
    auth: Auth,
}

impl Default for AuthBuilder {
    fn default() -> Self {
        AuthBuilder {
            auth: Auth {
                key: None,
                public: Vec::new(),
                cookie: DEFAULT_COOKIE.to_owned(),
                require_exp: true,
                leeway: Duration::ZERO,
            },
        }
    }
}

impl AuthBuilder {
    /// The key that verifies tokens. Without one, only public channels can be subscribed to.
    ///
    /// ```
    /// let _ = sse_server::Auth::builder().key(sse_server::JwtKey::hs256("s")).build();
    /// ```
    pub fn key(mut self, key: JwtKey) -> Self {
        self.auth.key = Some(key);
        self
    }

    /// Lets anyone subscribe, without a token, to the channels `pattern` covers (repeatable).
    ///
    /// ```
    /// let auth = sse_server::Auth::builder().public_channel("*").build();
    /// assert!(auth.is_public("anything"));
    /// ```
    pub fn public_channel(mut self, pattern: &str) -> Self {
        self.auth.public.push(ChannelPattern::new(pattern));
        self
    }

    /// The cookie that may carry a subscriber's token (default [`DEFAULT_COOKIE`], `sse_token`).
    ///
    /// ```
    /// let _ = sse_server::Auth::builder().cookie_name("jwt").build();
    /// ```
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.auth.cookie = name.into();
        self
    }

    /// Whether tokens must carry `exp` (default true: a token without one is refused with 401).
    ///
    /// ```
    /// let _ = sse_server::Auth::builder().require_exp(false).build();
    /// ```
    pub fn require_exp(mut self, required: bool) -> Self {
        self.auth.require_exp = required;
        self
    }

    /// Clock skew tolerated on `exp` and `nbf` (default none). A stream still ends at `exp` plus this.
    ///
    /// ```
    /// let _ = sse_server::Auth::builder().leeway(std::time::Duration::from_secs(5)).build();
    /// ```
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.auth.leeway = leeway;
        self
    }

    /// Finishes the configuration.
    ///
    /// ```
    /// let _auth = sse_server::Auth::builder().build();
    /// ```
    pub fn build(self) -> Auth {
        self.auth
    }
}

/// What a verified token grants.
#[derive(Debug, Clone, Default)]
pub(crate) struct Grant {
    /// Seconds since the Unix epoch after which the token is no longer valid.
    pub(crate) exp: Option<u64>,
    subscribe: Vec<ChannelPattern>,
    publish: Vec<ChannelPattern>,
}

#[derive(Deserialize)]
struct Claims {
    exp: Option<u64>,
    #[serde(default)]
    sse: ChannelClaims,
}

#[derive(Deserialize, Default)]
struct ChannelClaims {
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    publish: Vec<String>,
}

/// What a subscription or publish is allowed, once authorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// A public channel, or no authorization configured: no deadline.
    Open,
    /// Granted by a token valid until `exp` (seconds since the epoch), if it has one.
    Token { exp: Option<u64> },
}

/// Where a subscription request may carry its token.
pub(crate) struct Presented<'a> {
    pub(crate) headers: &'a HeaderMap,
    pub(crate) query: Option<&'a str>,
}

impl Auth {
    /// Starts configuring authorization.
    ///
    /// ```
    /// let _ = sse_server::Auth::builder();
    /// ```
    pub fn builder() -> AuthBuilder {
        AuthBuilder::default()
    }

    /// True when `channel` can be subscribed to without a token.
    ///
    /// ```
    /// assert!(!sse_server::Auth::builder().build().is_public("x"));
    /// ```
    pub fn is_public(&self, channel: &str) -> bool {
        self.public.iter().any(|p| p.matches(channel))
    }

    /// The token a request presents: `Authorization: Bearer`, then the cookie, then `?access_token=`.
    fn presented_token(&self, req: &Presented<'_>) -> Option<String> {
        bearer(req.headers)
            .or_else(|| cookie(req.headers, &self.cookie))
            .or_else(|| query_token(req.query))
    }

    /// The 401 for a subscription to `what` (a channel or pattern) that came without a token.
    fn needs_token(&self, what: &str) -> Error {
        Error::Unauthorized(format!(
            "channel {what:?} needs a token: send Authorization: Bearer <jwt>, the {} cookie or ?access_token=<jwt>",
            self.cookie
        ))
    }

    /// Decides on a subscription to `channel`: open (public), granted until the token's `exp`, or an
    /// [`Error::Unauthorized`] (401) / [`Error::Forbidden`] (403).
    pub(crate) fn subscribe(&self, req: &Presented<'_>, channel: &str) -> Result<Access, Error> {
        if self.is_public(channel) {
            return Ok(Access::Open);
        }
        let token = self.presented_token(req);
        let Some(token) = token else {
            return Err(self.needs_token(channel));
        };
        let grant = self.verify(&token)?;
        if grant.subscribe.iter().any(|p| p.matches(channel)) {
            Ok(Access::Token { exp: grant.exp })
        } else {
            Err(Error::Forbidden(format!(
                "the token does not allow subscribing to {channel:?}: add it (or a prefix/* pattern) to the sse.subscribe claim"
            )))
        }
    }

    /// Decides on a multi-channel subscription: every entry (channel or `prefix/*` pattern) must be
    /// public or covered by the token's `subscribe` grants (see [`ChannelPattern::covers`]), else a
    /// 403 naming the first refused entry (401 without a valid token when some entry is not public).
    pub(crate) fn subscribe_entries(
        &self,
        req: &Presented<'_>,
        entries: &[String],
    ) -> Result<Access, Error> {
        let public = |e: &String| self.public.iter().any(|p| p.covers(e));
        let Some(first_private) = entries.iter().find(|e| !public(e)) else {
            return Ok(Access::Open);
        };
        let token = self.presented_token(req);
        let Some(token) = token else {
            return Err(self.needs_token(first_private));
        };
        let grant = self.verify(&token)?;
        let allowed = |e: &String| public(e) || grant.subscribe.iter().any(|p| p.covers(e));
        match entries.iter().find(|e| !allowed(e)) {
            None => Ok(Access::Token { exp: grant.exp }),
            Some(refused) => Err(Error::Forbidden(format!(
                "the token does not allow subscribing to {refused:?}: add it (or a prefix/* pattern covering all of it) to the sse.subscribe claim"
            ))),
        }
    }

    /// Which channels the credentials of `req` may see listed (`GET /channels`): those a valid token's
    /// `subscribe` claim covers, plus the public ones. Without a token, or with an invalid one, an
    /// [`Error::Unauthorized`] (401): the list itself (names, counts, last ids) is private metadata.
    pub(crate) fn listing(&self, req: &Presented<'_>) -> Result<Vec<ChannelPattern>, Error> {
        let token = self.presented_token(req);
        let Some(token) = token else {
            return Err(Error::Unauthorized(format!(
                "listing channels needs credentials: send Authorization: Bearer <publish token or jwt>, the {} cookie or ?access_token=<jwt>",
                self.cookie
            )));
        };
        let grant = self.verify(&token)?;
        Ok(grant
            .subscribe
            .into_iter()
            .chain(self.public.iter().cloned())
            .collect())
    }

    /// Decides on a publish to `channel` (`None`: a broadcast, which needs `*`) with the bearer token of
    /// `headers`. `Ok(None)` means no token was presented.
    pub(crate) fn publish(
        &self,
        headers: &HeaderMap,
        channel: Option<&str>,
    ) -> Result<Option<Access>, Error> {
        let Some(token) = bearer(headers) else {
            return Ok(None);
        };
        let grant = self.verify(&token)?;
        let allowed = match channel {
            Some(channel) => grant.publish.iter().any(|p| p.matches(channel)),
            None => grant.publish.contains(&ChannelPattern::Any),
        };
        if allowed {
            Ok(Some(Access::Token { exp: grant.exp }))
        } else {
            Err(Error::Forbidden(match channel {
                Some(channel) => format!(
                    "the token does not allow publishing on {channel:?}: add it (or a prefix/* pattern) to the sse.publish claim"
                ),
                None => "broadcasting needs \"*\" in the token's sse.publish claim".to_owned(),
            }))
        }
    }

    /// Verifies a token's signature, algorithm, `exp` and `nbf`, and reads its channel claims.
    pub(crate) fn verify(&self, token: &str) -> Result<Grant, Error> {
        let Some(key) = &self.key else {
            return Err(Error::Unauthorized(
                "this hub verifies no tokens (no JWT key configured); only public channels are open"
                    .to_owned(),
            ));
        };
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = self.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.required_spec_claims.clear();
        if self.require_exp {
            validation.required_spec_claims.insert("exp".to_owned());
        }
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            Error::Unauthorized(match e.kind() {
                ErrorKind::ExpiredSignature => {
                    "the token has expired: get a fresh one and reconnect".to_owned()
                }
                ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".to_owned(),
                ErrorKind::InvalidSignature => "the token's signature is wrong".to_owned(),
                ErrorKind::InvalidAlgorithm => format!(
                    "the token is not signed with {}, the algorithm this hub accepts",
                    key.algorithm()
                ),
                ErrorKind::MissingRequiredClaim(c) => {
                    format!("the token has no \"{c}\" claim; issue tokens that expire")
                }
                _ => format!("the token is not a valid JWT: {e}"),
            })
        })?;
        let claims = data.claims;
        // jsonwebtoken still accepts a token during the second of its `exp`; the stream deadline is
        // exact, so refuse from that instant on too (RFC 7519: valid only *before* exp).
        if let Some(exp) = claims.exp
            && self.remaining(exp).is_zero()
        {
            return Err(Error::Unauthorized(
                "the token has expired: get a fresh one and reconnect".to_owned(),
            ));
        }
        Ok(Grant {
            exp: claims.exp,
            subscribe: claims
                .sse
                .subscribe
                .iter()
                .map(|p| ChannelPattern::new(p))
                .collect(),
            publish: claims
                .sse
                .publish
                .iter()
                .map(|p| ChannelPattern::new(p))
                .collect(),
        })
    }

    /// The deadline of a stream opened with a token expiring at `exp`, from now.
    pub(crate) fn remaining(&self, exp: u64) -> Duration {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        (Duration::from_secs(exp) + self.leeway).saturating_sub(now)
    }
}

fn query_token(query: Option<&str>) -> Option<String> {
    query_param(query, "access_token").filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    const SECRET: &str = "unit-test-secret-unit-test-secret";

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn token(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn auth() -> Auth {
        Auth::builder()
            .key(JwtKey::hs256(SECRET))
            .public_channel("pub/*")
            .build()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn token_sources_and_decisions() {
        let t = token(serde_json::json!({"exp": now() + 60, "sse": {"subscribe": ["a", "b/*"]}}));
        let a = auth();
        let by_header = headers(&[("authorization", &format!("Bearer {t}"))]);
        let by_cookie = headers(&[("cookie", &format!("x=1; sse_token={t}; y=2"))]);
        let none = HeaderMap::new();
        let query = format!("lastEventId=1&access_token={t}");
        for (h, q) in [
            (&by_header, None),
            (&by_cookie, None),
            (&none, Some(query.as_str())),
        ] {
            let p = Presented {
                headers: h,
                query: q,
            };
            assert!(matches!(
                a.subscribe(&p, "a"),
                Ok(Access::Token { exp: Some(_) })
            ));
            assert!(matches!(a.subscribe(&p, "b/c/d"), Ok(Access::Token { .. })));
            assert!(matches!(a.subscribe(&p, "b"), Err(Error::Forbidden(_))));
            assert!(matches!(a.subscribe(&p, "pub/x"), Ok(Access::Open)));
        }
        let p = Presented {
            headers: &none,
            query: None,
        };
        assert!(matches!(a.subscribe(&p, "a"), Err(Error::Unauthorized(_))));
        // A subscribe grant does not allow publishing.
        assert!(matches!(
            a.publish(&by_header, Some("a")),
            Err(Error::Forbidden(_))
        ));
        assert!(matches!(a.publish(&none, Some("a")), Ok(None)));
    }

    #[test]
    fn patterns_need_a_grant_covering_all_of_them() {
        let grant = |g: &str, e: &str| ChannelPattern::new(g).covers(e);
        assert!(grant("users/*", "users/*") && grant("users/*", "users/1/*"));
        assert!(grant("users/*", "users/1") && grant("*", "users/*"));
        assert!(!grant("users/1", "users/*") && !grant("users/1/*", "users/*"));
        assert!(!grant("users/*", "usersx/*") && !grant("users/*", "users"));
        let t = token(serde_json::json!({"exp": now() + 60, "sse": {"subscribe": ["a", "b/*"]}}));
        let h = headers(&[("authorization", &format!("Bearer {t}"))]);
        let p = Presented {
            headers: &h,
            query: None,
        };
        let entries = |e: &[&str]| e.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let a = auth();
        assert!(matches!(
            a.subscribe_entries(&p, &entries(&["a", "b/*", "b/1/*", "pub/*"])),
            Ok(Access::Token { exp: Some(_) })
        ));
        match a.subscribe_entries(&p, &entries(&["a", "c", "b", "d/*"])) {
            Err(Error::Forbidden(m)) => assert!(m.contains("\"c\""), "{m}"),
            other => panic!("{other:?}"),
        }
        let none = HeaderMap::new();
        let anonymous = Presented {
            headers: &none,
            query: None,
        };
        assert!(matches!(
            a.subscribe_entries(&anonymous, &entries(&["pub/*", "pub/x"])),
            Ok(Access::Open)
        ));
        assert!(matches!(
            a.subscribe_entries(&anonymous, &entries(&["pub/x", "a"])),
            Err(Error::Unauthorized(_))
        ));
    }

    #[test]
    fn refuses_expired_unsigned_foreign_and_exp_less_tokens() {
        let a = auth();
        let expired = token(serde_json::json!({"exp": now() - 1, "sse": {"subscribe": ["*"]}}));
        let no_exp = token(serde_json::json!({"sse": {"subscribe": ["*"]}}));
        let foreign = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"exp": now() + 60, "sse": {"subscribe": ["*"]}}),
            &EncodingKey::from_secret(b"another secret"),
        )
        .unwrap();
        let mut none_alg = token(serde_json::json!({"exp": now() + 60}));
        // {"alg":"none"} header with the same payload and no signature.
        let payload = none_alg.split('.').nth(1).unwrap().to_owned();
        none_alg = format!("eyJhbGciOiJub25lIn0.{payload}.");
        for t in [expired, no_exp, foreign, none_alg, "garbage".to_owned()] {
            assert!(matches!(a.verify(&t), Err(Error::Unauthorized(_))), "{t}");
        }
        let relaxed = Auth::builder()
            .key(JwtKey::hs256(SECRET))
            .require_exp(false)
            .build();
        let no_exp = token(serde_json::json!({"sse": {"publish": ["*"]}}));
        let h = headers(&[("authorization", &format!("bearer {no_exp}"))]);
        assert_eq!(
            relaxed.publish(&h, None).unwrap(),
            Some(Access::Token { exp: None })
        );
    }
}
