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

/// Adds the configured headers and, when the request's origin is allowed, the CORS headers.
pub(crate) fn decorate(config: &Config, request: &HeaderMap, headers: &mut HeaderMap) {
    for (name, value) in config.headers() {
        headers.append(name.clone(), value.clone());
    }
    if let Some(allowed) = allowed_origin(config, request) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Content-Type"),
        );
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

fn allowed_origin(config: &Config, request: &HeaderMap) -> Option<HeaderValue> {
    let origin = request.get(header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    config
        .cors_origins()
        .iter()
        .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(text))
        .then(|| origin.clone())
}
