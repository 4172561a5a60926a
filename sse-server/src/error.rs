use http::StatusCode;

/// Everything that can go wrong in this crate.
///
/// Each variant maps to the HTTP status the [`HubService`](crate::http::service::HubService) answers with
/// ([`Error::status`]), and its message says what to do about it.
///
/// ```
/// let err = sse_server::Error::ShuttingDown;
/// assert_eq!(err.status(), http::StatusCode::SERVICE_UNAVAILABLE);
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The hub is shutting down and accepts no new subscriptions or publishes.
    #[error("the hub is shutting down; reconnect to another instance or retry after it restarts")]
    ShuttingDown,
    /// The event is invalid (for example CR/LF in `id` or `event`).
    #[error("invalid event: {0}")]
    InvalidEvent(#[from] sse_proto::Error),
    /// The encoded event is larger than the hub's limit.
    #[error(
        "the event is {size} bytes encoded, over the limit of {limit} bytes; send smaller events or raise the limit (HubBuilder::max_event_bytes)"
    )]
    EventTooLarge {
        /// Encoded size of the refused event.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A multi-channel subscription's list is empty, too long, or holds an invalid pattern.
    #[error("invalid subscription: {0}")]
    InvalidSubscription(String),
    /// A channel name is empty, too long, or contains control, bidi or invisible characters.
    #[error(
        "invalid channel name {name:?}: {reason}; use 1 to 256 bytes of printable characters (no control, bidi or zero-width characters)"
    )]
    InvalidChannel {
        /// The refused name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An `on_subscribe` hook refused the subscription.
    #[error("subscription refused: {message}")]
    Rejected {
        /// The HTTP status to answer with.
        status: StatusCode,
        /// Why, for the client.
        message: String,
    },
    /// The replay store failed.
    #[error("replay store error: {0}; check the store backend's health")]
    Store(String),
    /// The durable store's data directory or file cannot be used (damaged, foreign, locked, unwritable).
    #[error("cannot use the replay store {}: {reason}", path.display())]
    DataDir {
        /// The file (or directory) concerned.
        path: std::path::PathBuf,
        /// What is wrong and what to do about it.
        reason: String,
    },
    /// The request carries no usable credentials: missing, malformed, badly signed or expired token.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The credentials are valid but do not grant this channel or action.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The authorization settings are unusable (for example a key file that is not PEM).
    #[error("authorization setup failed: {0}")]
    AuthConfig(String),
    /// The hub already has its maximum number of live channels.
    #[error(
        "the hub has reached its limit of {limit} live channels; retry later or raise the limit (HubBuilder::max_channels)"
    )]
    TooManyChannels {
        /// The configured limit.
        limit: usize,
    },
    /// The TLS certificate or key could not be loaded.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// An I/O error (binding a socket, reading a file).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The HTTP status that reports this error to a client.
    ///
    /// ```
    /// let err = sse_server::Error::EventTooLarge { size: 10, limit: 5 };
    /// assert_eq!(err.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
    /// ```
    pub fn status(&self) -> StatusCode {
        match self {
            Error::ShuttingDown | Error::Store(_) | Error::TooManyChannels { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::AuthConfig(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::InvalidEvent(_)
            | Error::InvalidChannel { .. }
            | Error::InvalidSubscription(_) => StatusCode::BAD_REQUEST,
            Error::EventTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Rejected { status, .. } => *status,
            Error::Tls(_) | Error::Io(_) | Error::DataDir { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}
