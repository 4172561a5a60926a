//! A subscription's deadline: when its credentials expire, the stream ends after one in-band event.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::time::{Instant, Sleep};

use crate::hub::control;

/// Ends a stream at a deadline with an `sse-expired` event.
pub(crate) struct Expiry {
    sleep: Pin<Box<Sleep>>,
    farewell: Bytes,
}

impl fmt::Debug for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Expiry")
            .field("deadline", &self.sleep.deadline())
            .finish_non_exhaustive()
    }
}

impl Expiry {
    /// `exp` (seconds since the epoch, when known) goes into the event's data for the client.
    pub(crate) fn new(deadline: Instant, exp: Option<u64>) -> Expiry {
        Expiry {
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            farewell: control::expired(exp),
        }
    }

    /// Ready once the deadline has passed (and again on every later poll).
    pub(crate) fn poll_due(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.sleep.as_mut().poll(cx)
    }

    /// The farewell event once the deadline has passed.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Bytes> {
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(self.farewell.clone()),
            Poll::Pending => Poll::Pending,
        }
    }
}
