//! A request extension the transport adds to requests that arrived over TLS, so the service can
//! label what it serves without knowing the connection.

/// Marks a request that arrived over TLS.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Secure;
