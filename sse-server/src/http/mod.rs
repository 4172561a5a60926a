//! The HTTP face of the hub: a `tower::Service` with its routing, publish bodies, CORS and
//! response headers, and authorization.

#[cfg(feature = "jwt")]
pub(crate) mod auth;
pub(crate) mod body;
pub(crate) mod headers;
pub(crate) mod peer;
pub(crate) mod publish;
pub(crate) mod query;
pub(crate) mod secure;
pub(crate) mod service;
pub(crate) mod token;
