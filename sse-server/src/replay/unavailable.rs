//! The store a [`HubBuilder::build`](crate::HubBuilder::build) falls back to when its store (a data
//! directory, say) cannot be opened: every operation fails with the reason, so the failure is loud (503
//! with the message, logged) instead of silently serving from memory. `try_build` reports it up front
//! instead.

use sse_proto::Event;

use super::store::{BoxFuture, Replay, ReplayStore, StoredChannel};
use super::stored::StoredEvent;
use crate::error::Error;

/// A store that refuses everything with the reason it could not be opened.
#[derive(Debug)]
pub(crate) struct Unavailable(pub(crate) String);

impl Unavailable {
    fn error<T: Send + 'static>(&self) -> BoxFuture<'_, Result<T, Error>> {
        let why = self.0.clone();
        Box::pin(async move { Err(Error::Store(why)) })
    }
}

impl ReplayStore for Unavailable {
    fn append<'a>(&'a self, _: &'a str, _: Event) -> BoxFuture<'a, Result<StoredEvent, Error>> {
        self.error()
    }

    fn replay<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<Replay, Error>> {
        self.error()
    }

    fn mint_id(&self) -> BoxFuture<'_, Result<String, Error>> {
        self.error()
    }

    fn channels(&self) -> BoxFuture<'_, Result<Vec<StoredChannel>, Error>> {
        self.error()
    }
}
