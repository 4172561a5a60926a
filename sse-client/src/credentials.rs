//! The hook that supplies fresh credentials before every (re)connection.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use reqwest::header::HeaderMap;

use crate::error::BoxError;

/// A shared, type-erased credentials callback: returns headers to set on the next request.
#[derive(Clone)]
pub(crate) struct Credentials(
    Arc<dyn Fn() -> BoxFuture<'static, Result<HeaderMap, BoxError>> + Send + Sync>,
);

impl Credentials {
    pub(crate) fn new<F, Fut>(f: F) -> Credentials
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<HeaderMap, BoxError>> + Send + 'static,
    {
        Credentials(Arc::new(move || Box::pin(f())))
    }

    pub(crate) fn call(&self) -> BoxFuture<'static, Result<HeaderMap, BoxError>> {
        (self.0)()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(<callback>)")
    }
}
