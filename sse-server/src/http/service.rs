//! The HTTP face of a [`Hub`]: a `tower::Service` that mounts in hyper, axum or any tower stack.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;

use crate::error::Error;
use crate::http::body::Body;
use crate::http::headers;
use crate::http::peer::{Peer, Place};
use crate::http::publish::parse_publish_body;
use crate::http::query::{percent_decode, query_param};
use crate::http::secure::Secure;
use crate::http::token::{bearer, constant_time_eq};
use crate::hub::handle::Hub;
use crate::hub::metrics::Transport;
use crate::hub::multi::SubscribeOptions;
use crate::hub::subscription::Subscription;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Routes of the hub:
///
/// | Method and path            | Does                                                          |
/// |----------------------------|---------------------------------------------------------------|
/// | `GET /events/{channel}`    | subscribe (`Last-Event-ID` header or `lastEventId` query)     |
/// | `GET /events?channel=A&channel=P/*` | one stream for several channels and `prefix/*` patterns ([`Hub::subscribe_many`]); `event-type=channel` tags untyped events with their channel; 400 for none, too many or an invalid entry |
/// | `POST /events/{channel}`   | publish (bearer token), answers `{"id":"..."}`                |
/// | `POST /events`             | broadcast to every channel (bearer token), answers `{"id":"..."}` |
/// | `DELETE /events/{channel}` | end every stream of the channel (bearer token)                |
/// | `GET /channels`            | `[{"name","subscribers","last_id"}]` (a multi-channel subscriber counts in every channel it follows) |
/// | `GET /healthz`             | `{"status":"ok"}` (503 while shutting down): liveness          |
/// | `GET /readyz`              | `{"status":"ready"}`, or 503 `{"status":"not ready","reason"}` while publishes cannot be acknowledged (store failing, Redis unreachable, shutting down) |
/// | `GET /metrics`             | Prometheus text                                               |
///
/// These are the paths of a service mounted at the root (hyper, [`Server`](crate::transport::server::Server),
/// axum's `fallback_service`). Under axum's `nest_service("/events", …)`, use
/// [`nested`](HubService::nested): the channel routes then keep the same public URLs.
///
/// Errors are JSON `{"error": "..."}`: 401 for a missing or wrong token (403 when publishing is
/// disabled), 400 for a bad body or channel name, 413 over the size limit, 404/405 for unknown routes,
/// 503 while shutting down, 429 with `Retry-After` for a subscription over the per-connection or per-IP
/// limit of [`Limits`](crate::transport::limits::Limits) (under [`Server`](crate::transport::server::Server)). With [`authorization`](HubService::authorization), subscribing to a channel
/// that is not public answers 401 without a valid token and 403 when the token does not grant it.
/// Without [`publish_token`](HubService::publish_token) (or
/// [`allow_anonymous_publish`](HubService::allow_anonymous_publish)) nobody can publish over HTTP.
///
/// ```
/// use tower::ServiceExt;
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// let hub = sse_server::Hub::builder().build();
/// let svc = sse_server::HubService::new(hub).publish_token("secret");
/// let req = http::Request::post("/events/news")
///     .header("authorization", "Bearer secret")
///     .header("content-type", "text/plain")
///     .body(http_body_util::Full::new(bytes::Bytes::from("hello")))?;
/// let resp = svc.oneshot(req).await?;
/// assert_eq!(resp.status(), 200);
/// # Ok::<(), Box<dyn std::error::Error>>(()) })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct HubService {
    hub: Hub,
    auth: Arc<PublishAuth>,
    #[cfg(feature = "jwt")]
    access: Option<Arc<crate::http::auth::Auth>>,
    /// Paths are relative to a mount point (`/{channel}`, `/`), as `Router::nest_service` gives them.
    nested: bool,
    /// Whether allow-listed origins may send cookies (`Access-Control-Allow-Credentials: true`).
    cors_credentials: bool,
    /// The longest a publish body may take to arrive (408 after it).
    body_timeout: Duration,
    /// Whether `GET /metrics` is served here (off when metrics have their own listener).
    metrics: bool,
}

/// How long a publish body may take to arrive by default: [`HubService::body_timeout`].
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
enum PublishAuth {
    Disabled,
    Token(String),
    Anonymous,
}

impl HubService {
    /// A service for `hub` that refuses publishing until a token is set.
    ///
    /// ```
    /// let _svc = sse_server::HubService::new(sse_server::Hub::builder().build());
    /// ```
    pub fn new(hub: Hub) -> Self {
        HubService {
            hub,
            auth: Arc::new(PublishAuth::Disabled),
            #[cfg(feature = "jwt")]
            access: None,
            nested: false,
            cors_credentials: false,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            metrics: true,
        }
    }

    /// The longest a publish body may take to arrive, from the end of the request head (default
    /// [`DEFAULT_BODY_TIMEOUT`], 10 s): a publisher that is slower, or that sends an endless chunked
    /// body, gets 408 with a JSON error and the connection is closed.
    ///
    /// ```
    /// let _svc = sse_server::HubService::new(sse_server::Hub::builder().build())
    ///     .body_timeout(std::time::Duration::from_secs(5));
    /// ```
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// Stops answering `GET /metrics` (it then gets 404), for a hub that serves its metrics on a
    /// separate, private address instead (the binary's `--metrics-listen`; serve
    /// [`Hub::render_metrics`] there).
    ///
    /// ```
    /// let _svc = sse_server::HubService::new(sse_server::Hub::builder().build()).without_metrics();
    /// ```
    pub fn without_metrics(mut self) -> Self {
        self.metrics = false;
        self
    }

    /// Routes relative to where the service is mounted, for a router that strips the mount point
    /// from the path, such as axum's `Router::nest_service`: the service then sees `/{channel}` where a
    /// root mount sees `/events/{channel}`, and `/` where it sees `/events`. So under
    /// `nest_service("/events", …)` the public URLs are the same as at the root: `GET /events/{channel}`
    /// subscribes, `POST /events/{channel}` publishes, `POST /events` broadcasts, `DELETE
    /// /events/{channel}` closes. `/channels`, `/healthz` and `/metrics` are not part of a nested
    /// service (a path below the mount point is always a channel name); serve them from a root-mounted
    /// service, or from [`Hub::channels`] and [`Hub::metrics`].
    ///
    /// Mounting at the root (`fallback_service`, hyper, [`Server`](crate::transport::server::Server)) needs
    /// no option: there the service answers the full paths listed on [`HubService`].
    ///
    /// ```
    /// use tower::ServiceExt;
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let hub = sse_server::Hub::builder().build();
    /// let app = axum::Router::new()
    ///     .route("/", axum::routing::get(|| async { "the application" }))
    ///     .nest_service("/events", sse_server::HubService::new(hub.clone()).nested().publish_token("secret"));
    /// let publish = http::Request::post("/events/news")
    ///     .header("authorization", "Bearer secret")
    ///     .header("content-type", "application/x-www-form-urlencoded")
    ///     .body(axum::body::Body::from("data=hi"))?;
    /// let resp = app.oneshot(publish).await?;
    /// assert_eq!(resp.status(), 200);
    /// # Ok::<(), Box<dyn std::error::Error>>(()) })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn nested(mut self) -> Self {
        self.nested = true;
        self
    }

    /// Lets the origins allowed with [`HubBuilder::cors_origin`](crate::hub::builder::HubBuilder::cors_origin)
    /// send credentials (cookies such as the `sse_token` JWT cookie): to a request from an origin that
    /// is listed by name, every answer, preflight included, carries `Access-Control-Allow-Origin: <that
    /// origin>`, `Access-Control-Allow-Credentials: true` and `Vary: Origin`, so that a page elsewhere
    /// can open `new EventSource(url, { withCredentials: true })`. Origins let in only by `*` never get
    /// credentials: list the origins you trust by name.
    ///
    /// ```
    /// let hub = sse_server::Hub::builder().cors_origin("https://app.example").build();
    /// let _svc = sse_server::HubService::new(hub).cors_credentials();
    /// ```
    pub fn cors_credentials(mut self) -> Self {
        self.cors_credentials = true;
        self
    }

    /// Requires `Authorization: Bearer <token>` to publish, broadcast and close channels.
    ///
    /// ```
    /// let _svc = sse_server::HubService::new(sse_server::Hub::builder().build()).publish_token("t0k3n");
    /// ```
    pub fn publish_token(mut self, token: impl Into<String>) -> Self {
        self.auth = Arc::new(PublishAuth::Token(token.into()));
        self
    }

    /// Lets anyone publish (for a hub behind your own authentication layer).
    ///
    /// ```
    /// let _svc = sse_server::HubService::new(sse_server::Hub::builder().build()).allow_anonymous_publish();
    /// ```
    pub fn allow_anonymous_publish(mut self) -> Self {
        self.auth = Arc::new(PublishAuth::Anonymous);
        self
    }

    #[cfg(feature = "jwt")]
    /// Authorizes subscribers and publishers with JWTs (see [`Auth`](crate::http::auth::Auth) for the claims): only
    /// public channels can then be subscribed to without a token (401 without a valid one, 403 when the
    /// token does not grant the channel), and a stream ends with an `sse-expired` event when its token
    /// expires. A [`publish_token`](HubService::publish_token), if also set, still publishes anywhere.
    ///
    /// ```
    /// let auth = sse_server::Auth::builder().key(sse_server::JwtKey::hs256("a-long-secret")).build();
    /// let _svc = sse_server::HubService::new(sse_server::Hub::builder().build()).authorization(auth);
    /// ```
    pub fn authorization(mut self, auth: crate::http::auth::Auth) -> Self {
        self.access = Some(Arc::new(auth));
        self
    }

    /// The hub this service serves.
    ///
    /// ```
    /// let hub = sse_server::Hub::builder().build();
    /// let svc = sse_server::HubService::new(hub.clone());
    /// assert!(!svc.hub().is_shutting_down());
    /// ```
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// True when this service answers `path` (`/events…`, `/channels`, `/healthz`, `/readyz`, `/metrics`), so that
    /// a host application can route everything else elsewhere.
    ///
    /// ```
    /// assert!(sse_server::HubService::handles("/events/x"));
    /// assert!(!sse_server::HubService::handles("/"));
    /// ```
    pub fn handles(path: &str) -> bool {
        path == "/events"
            || path.starts_with("/events/")
            || matches!(path, "/channels" | "/healthz" | "/readyz" | "/metrics")
    }

    async fn handle<B>(self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let request_headers = req.headers().clone();
        let mut response = self.route(req).await;
        headers::decorate(
            self.hub.config(),
            &request_headers,
            self.cors_credentials,
            response.headers_mut(),
        );
        response
    }

    async fn route<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let path = self.full_path(req.uri().path());
        let method = req.method().clone();
        if method == Method::OPTIONS {
            let mut resp = status_only(StatusCode::NO_CONTENT);
            headers::preflight(self.hub.config(), req.headers(), resp.headers_mut());
            return resp;
        }
        if path == "/events" {
            return match method {
                Method::GET | Method::HEAD => self.subscribe_many(req).await,
                Method::POST => self.publish(req, None).await,
                _ => method_not_allowed("GET, HEAD, POST, OPTIONS"),
            };
        }
        if let Some(raw) = path.strip_prefix("/events/") {
            let Ok(channel) = String::from_utf8(percent_decode(raw.as_bytes(), false)) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "the channel name is not valid UTF-8 once percent-decoded",
                );
            };
            return match method {
                Method::GET | Method::HEAD => self.subscribe(req, &channel).await,
                Method::POST => self.publish(req, Some(&channel)).await,
                Method::DELETE => self.close(req, &channel),
                _ => method_not_allowed("GET, HEAD, POST, DELETE, OPTIONS"),
            };
        }
        let get = matches!(method, Method::GET | Method::HEAD);
        match path.as_str() {
            "/channels" if get => self.channels(req.headers(), req.uri().query()).await,
            "/healthz" if get => {
                if self.hub.is_shutting_down() {
                    json(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &serde_json::json!({"status": "shutting down"}),
                    )
                } else {
                    json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
                }
            }
            "/readyz" if get => match self.hub.readiness().await {
                Ok(()) => json(StatusCode::OK, &serde_json::json!({"status": "ready"})),
                Err(e) => json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({"status": "not ready", "reason": e.to_string()}),
                ),
            },
            "/metrics" if get && self.metrics => {
                let mut resp = Response::new(Body::full(self.hub.render_metrics()));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                resp
            }
            "/channels" | "/healthz" | "/readyz" => method_not_allowed("GET, HEAD"),
            "/metrics" if self.metrics => method_not_allowed("GET, HEAD"),
            _ => error(
                StatusCode::NOT_FOUND,
                &format!("no route for {path}: subscribe with GET /events/{{channel}}"),
            ),
        }
    }

    /// `GET /channels`. With authorization on, the list is private: the publish token sees every channel,
    /// a JWT only the channels its `subscribe` claim grants (and the public ones), no credentials 401.
    #[cfg_attr(not(feature = "jwt"), allow(unused_variables))]
    async fn channels(&self, headers: &HeaderMap, query: Option<&str>) -> Response<Body> {
        #[cfg(feature = "jwt")]
        let visible = match &self.access {
            None => None,
            Some(_) if self.is_publisher(headers) => None,
            Some(auth) => {
                let presented = crate::http::auth::Presented { headers, query };
                match auth.listing(&presented) {
                    Ok(patterns) => Some(patterns),
                    Err(e) => return denied(&e),
                }
            }
        };
        #[cfg_attr(not(feature = "jwt"), allow(unused_mut))] // filtered only with JWT grants
        let mut list = match self.hub.channels().await {
            Ok(list) => list,
            Err(e) => return error(e.status(), &e.to_string()),
        };
        #[cfg(feature = "jwt")]
        if let Some(patterns) = visible {
            list.retain(|c| patterns.iter().any(|p| p.matches(&c.name)));
        }
        json(StatusCode::OK, &list)
    }

    /// True when `headers` carry the static publish token.
    #[cfg(feature = "jwt")]
    fn is_publisher(&self, headers: &HeaderMap) -> bool {
        match (&*self.auth, bearer(headers)) {
            (PublishAuth::Token(expected), Some(token)) => {
                constant_time_eq(token.as_bytes(), expected.as_bytes())
            }
            _ => false,
        }
    }

    /// The path as a root mount sees it: a nested service's `/x` is `/events/x`, its `/` is `/events`.
    fn full_path(&self, path: &str) -> String {
        if !self.nested {
            return path.to_owned();
        }
        match path.trim_start_matches('/') {
            "" => "/events".to_owned(),
            rest => format!("/events/{rest}"),
        }
    }

    async fn subscribe<B>(&self, req: Request<B>, channel: &str) -> Response<Body> {
        if let Err(e) = crate::hub::registry::check_channel(channel) {
            return error(e.status(), &e.to_string());
        }
        let options = match subscribe_options(req.uri().query()) {
            Ok(options) => options,
            Err(refused) => return refused,
        };
        let deadline = match self.subscriber_deadline(&req, channel) {
            Ok(deadline) => deadline,
            Err(refused) => return refused,
        };
        let places = match self.places(&req, 1) {
            Ok(places) => places,
            Err(refused) => return refused,
        };
        let last = last_event_id(&req);
        // Tagging needs a composite (it re-encodes); a plain subscription is the channel itself.
        let sub = if options.tags_channel() && !channel.contains('*') {
            self.hub
                .subscribe_many_with(&[channel], last.as_deref(), options, Some(req.headers()))
                .await
        } else {
            self.hub
                .subscribe_with(channel, last.as_deref(), Some(req.headers()))
                .await
        };
        stream_response(&req, sub, deadline, places)
    }

    /// `GET /events?channel=NAME&channel=prefix/*…`: one stream for several channels and patterns.
    async fn subscribe_many<B>(&self, req: Request<B>) -> Response<Body> {
        let raw = match crate::http::query::query_params(req.uri().query(), "channel") {
            Ok(raw) => raw,
            Err(bad) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "the channel parameter {bad:?} is not valid UTF-8 once percent-decoded"
                    ),
                );
            }
        };
        let max = self.hub.config().max_channels_per_subscription();
        // In the order sent: a 403 names the first refused entry as the client listed them.
        let entries: Vec<String> = match crate::hub::composite::check_entries(&raw, max) {
            Ok(entries) => entries.iter().map(|e| e.text()).collect(),
            Err(e) => return error(e.status(), &e.to_string()),
        };
        let options = match subscribe_options(req.uri().query()) {
            Ok(options) => options,
            Err(refused) => return refused,
        };
        let deadline = match self.entries_deadline(&req, &entries) {
            Ok(deadline) => deadline,
            Err(refused) => return refused,
        };
        // Counted once per entry against the connection's and the address's subscription limits.
        let places = match self.places(&req, entries.len()) {
            Ok(places) => places,
            Err(refused) => return refused,
        };
        let last = last_event_id(&req);
        let sub = self
            .hub
            .subscribe_many_with(&entries, last.as_deref(), options, Some(req.headers()))
            .await;
        stream_response(&req, sub, deadline, places)
    }

    /// `n` places among the subscriptions of the request's connection and client address (when the
    /// transport says who the client is), or the 429 answer.
    #[allow(clippy::result_large_err)]
    fn places<B>(&self, req: &Request<B>, n: usize) -> Result<Option<Place>, Response<Body>> {
        let Some(peer) = req.extensions().get::<Peer>() else {
            return Ok(None);
        };
        match peer.acquire_n(n) {
            Ok(place) => Ok(Some(place)),
            Err(over) => {
                tracing::debug!(reason = %over.message, "subscription refused: over a subscription limit");
                let mut resp = error(StatusCode::TOO_MANY_REQUESTS, &over.message);
                let secs = over.retry_after.as_secs_f64().ceil().max(1.0) as u64;
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                Err(resp)
            }
        }
    }

    /// The token deadline of a multi-channel subscription, or the refusal: every entry must be
    /// granted (403 names the first that is not).
    #[cfg(feature = "jwt")]
    #[allow(clippy::result_large_err)]
    fn entries_deadline<B>(
        &self,
        req: &Request<B>,
        entries: &[String],
    ) -> Result<Option<(tokio::time::Instant, u64)>, Response<Body>> {
        self.deadline(req, |auth, presented| {
            auth.subscribe_entries(presented, entries)
        })
    }

    /// Without JWT support, every channel is open to subscribers.
    #[cfg(not(feature = "jwt"))]
    #[allow(clippy::result_large_err, clippy::unnecessary_wraps)]
    fn entries_deadline<B>(
        &self,
        _req: &Request<B>,
        _entries: &[String],
    ) -> Result<Option<(tokio::time::Instant, u64)>, Response<Body>> {
        Ok(None)
    }

    /// When the subscriber's token expires (the stream then ends with `sse-expired`), or the
    /// refusal to answer with when it may not subscribe to `channel`.
    #[cfg(feature = "jwt")]
    #[allow(clippy::result_large_err)]
    fn subscriber_deadline<B>(
        &self,
        req: &Request<B>,
        channel: &str,
    ) -> Result<Option<(tokio::time::Instant, u64)>, Response<Body>> {
        self.deadline(req, |auth, presented| auth.subscribe(presented, channel))
    }

    /// The token deadline `decide` grants the request, or the refusal (none without JWT configured).
    #[cfg(feature = "jwt")]
    #[allow(clippy::result_large_err)]
    fn deadline<B>(
        &self,
        req: &Request<B>,
        decide: impl FnOnce(
            &crate::http::auth::Auth,
            &crate::http::auth::Presented<'_>,
        ) -> Result<crate::http::auth::Access, Error>,
    ) -> Result<Option<(tokio::time::Instant, u64)>, Response<Body>> {
        let Some(auth) = &self.access else {
            return Ok(None);
        };
        let presented = crate::http::auth::Presented {
            headers: req.headers(),
            query: req.uri().query(),
        };
        match decide(auth, &presented) {
            Ok(crate::http::auth::Access::Token { exp: Some(exp) }) => Ok(Some((
                tokio::time::Instant::now() + auth.remaining(exp),
                exp,
            ))),
            Ok(_) => Ok(None),
            Err(e) => Err(denied(&e)),
        }
    }

    /// Without JWT support, every channel is open to subscribers.
    #[cfg(not(feature = "jwt"))]
    #[allow(clippy::result_large_err, clippy::unnecessary_wraps)]
    fn subscriber_deadline<B>(
        &self,
        _req: &Request<B>,
        _channel: &str,
    ) -> Result<Option<(tokio::time::Instant, u64)>, Response<Body>> {
        Ok(None)
    }

    /// The refusal to answer with, when the request may not publish.
    fn refuse(&self, headers: &HeaderMap, channel: Option<&str>) -> Option<Response<Body>> {
        #[cfg(not(feature = "jwt"))]
        let _ = channel; // only JWT grants depend on the channel
        #[cfg(feature = "jwt")]
        if let Some(auth) = &self.access
            && !matches!(*self.auth, PublishAuth::Anonymous)
        {
            let given = bearer(headers);
            if let (PublishAuth::Token(expected), Some(token)) = (&*self.auth, &given)
                && constant_time_eq(token.as_bytes(), expected.as_bytes())
            {
                return None;
            }
            return match auth.publish(headers, channel) {
                Ok(Some(_)) => None,
                Ok(None) => Some(unauthorized(
                    "missing token: send the header Authorization: Bearer <token>",
                )),
                Err(e) => Some(denied(&e)),
            };
        }
        match &*self.auth {
            PublishAuth::Anonymous => None,
            PublishAuth::Disabled => Some(error(
                StatusCode::FORBIDDEN,
                "publishing over HTTP is disabled on this hub: configure a publish token",
            )),
            PublishAuth::Token(expected) => match bearer(headers).as_deref() {
                Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => None,
                Some(_) => Some(unauthorized("wrong publish token")),
                None => Some(unauthorized(
                    "missing publish token: send the header Authorization: Bearer <token>",
                )),
            },
        }
    }

    async fn publish<B>(&self, req: Request<B>, channel: Option<&str>) -> Response<Body>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        if let Some(resp) = self.refuse(req.headers(), channel) {
            return resp;
        }
        if let Some(channel) = channel
            && let Err(e) = crate::hub::registry::check_channel(channel)
        {
            return error(e.status(), &e.to_string());
        }
        let limit = self.hub.config().max_event_bytes();
        // Forms can triple a value's size with percent-escapes; the encoded event is checked exactly later.
        let body_limit = limit.saturating_mul(3).saturating_add(4096);
        let too_large = || {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "the request body is over the limit ({limit} bytes per event); send smaller events"
                ),
            )
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > body_limit) {
            return too_large();
        }
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let query = req.uri().query().map(str::to_owned);
        let http1 = req.version() < http::Version::HTTP_2;
        let collect = http_body_util::Limited::new(req.into_body(), body_limit).collect();
        let Ok(collected) = tokio::time::timeout(self.body_timeout, collect).await else {
            tracing::debug!(timeout = ?self.body_timeout, "publish body too slow; answered 408");
            let mut resp = error(
                StatusCode::REQUEST_TIMEOUT,
                &format!(
                    "the request body did not arrive within {} s; send the whole body promptly",
                    self.body_timeout.as_secs_f64()
                ),
            );
            if http1 {
                // The rest of the body is not worth reading: end the connection.
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            return resp;
        };
        let body: Bytes = match collected {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("could not read the request body: {e}"),
                );
            }
        };
        let event = match parse_publish_body(content_type.as_deref(), &body, query.as_deref()) {
            Ok(event) => event,
            Err(e) => return error(e.status(), &e.to_string()),
        };
        let result = match channel {
            Some(channel) => self.hub.publish(channel, event).await,
            None => self.hub.broadcast(event).await,
        };
        match result {
            Ok(id) => json(StatusCode::OK, &serde_json::json!({ "id": id })),
            Err(e) => error(e.status(), &e.to_string()),
        }
    }

    fn close<B>(&self, req: Request<B>, channel: &str) -> Response<Body> {
        if let Some(resp) = self.refuse(req.headers(), Some(channel)) {
            return resp;
        }
        let closed = self.hub.close_channel(channel);
        json(
            StatusCode::OK,
            &serde_json::json!({ "channel": channel, "closed": closed }),
        )
    }
}

fn status_only(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    resp
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(Body::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The subscriber's `Last-Event-ID` header, else its `lastEventId` query parameter.
fn last_event_id<B>(req: &Request<B>) -> Option<String> {
    let from_header = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    from_header.or_else(|| query_param(req.uri().query(), "lastEventId"))
}

/// `?event-type=channel` (the only value): tag untyped events with their channel; else a 400.
#[allow(clippy::result_large_err)]
fn subscribe_options(query: Option<&str>) -> Result<SubscribeOptions, Response<Body>> {
    match query_param(query, "event-type").as_deref() {
        None => Ok(SubscribeOptions::default()),
        Some("channel") => Ok(SubscribeOptions::default().tag_channel(true)),
        Some(other) => Err(error(
            StatusCode::BAD_REQUEST,
            &format!(
                "unknown event-type {other:?}: the only value is `channel` (puts the channel name in the event: field of untyped events)"
            ),
        )),
    }
}

/// The answer to a subscription: the event stream (holding its limit places), or the error.
fn stream_response<B>(
    req: &Request<B>,
    sub: Result<Subscription, Error>,
    deadline: Option<(tokio::time::Instant, u64)>,
    places: Option<Place>,
) -> Response<Body> {
    match sub {
        Ok(mut sub) => {
            let tls = req.extensions().get::<Secure>().is_some();
            sub.served_over(if req.version() == http::Version::HTTP_2 {
                Transport::Http2 { tls }
            } else {
                Transport::Http1 { tls }
            });
            let sub = match deadline {
                Some((at, exp)) => sub.expires_at(at, Some(exp)),
                None => sub,
            };
            let mut resp = Response::new(Body::stream(sub).holding(places));
            headers::event_stream(resp.headers_mut());
            resp
        }
        Err(e) => error(e.status(), &e.to_string()),
    }
}

/// A JSON error answer `{"error": message}`.
pub(crate) fn error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "error": message }))
}

fn unauthorized(message: &str) -> Response<Body> {
    let mut resp = error(StatusCode::UNAUTHORIZED, message);
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// The answer to a refused authorization: 401 (with `WWW-Authenticate`) or 403.
#[cfg(feature = "jwt")]
fn denied(e: &Error) -> Response<Body> {
    if e.status() == StatusCode::UNAUTHORIZED {
        unauthorized(&e.to_string())
    } else {
        error(e.status(), &e.to_string())
    }
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut resp = error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("method not allowed here; allowed: {allow}"),
    );
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

impl<B> tower::Service<Request<B>> for HubService
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}

impl From<Error> for Response<Body> {
    fn from(e: Error) -> Self {
        error(e.status(), &e.to_string())
    }
}
