//! Response headers: the event-stream set, configured extras and CORS.

use http::header::{self, HeaderMap, HeaderValue};

use crate::hub::config::Config;

/// Marks a response as an unbuffered event stream (proxies such as nginx honour `X-Accel-Buffering`).
pub(crate) fn event_stream(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

/// Adds the configured headers and, when the request's origin is allowed, the CORS headers; with
/// `credentials`, an origin listed by name (not one let in by `*`) may also send cookies.
pub(crate) fn decorate(
    config: &Config,
    request: &HeaderMap,
    credentials: bool,
    headers: &mut HeaderMap,
) {
    for (name, value) in config.headers() {
        headers.append(name.clone(), value.clone());
    }
    if let Some(allowed) = allowed_origin(config, request) {
        // Always the request's own origin, never `*`: browsers refuse `*` on a credentialed request.
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed.origin);
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Content-Type"),
        );
        if credentials && allowed.by_name {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }
}

/// Adds what a CORS preflight answer needs.
pub(crate) fn preflight(config: &Config, request: &HeaderMap, headers: &mut HeaderMap) {
    if allowed_origin(config, request).is_some() {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Authorization, Content-Type, Last-Event-ID, Cache-Control"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
}

/// A request origin the configuration lets in.
struct Allowed {
    origin: HeaderValue,
    /// Listed by name rather than matched by `*`: only such origins may send credentials.
    by_name: bool,
}

fn allowed_origin(config: &Config, request: &HeaderMap) -> Option<Allowed> {
    let origin = request.get(header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    let listed = config.cors_origins();
    let by_name = listed
        .iter()
        .any(|allowed| allowed.eq_ignore_ascii_case(text));
    (by_name || listed.iter().any(|allowed| allowed == "*")).then(|| Allowed {
        origin: origin.clone(),
        by_name,
    })
}
