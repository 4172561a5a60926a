//! The crate's error type.

/// What can go wrong while benchmarking.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A socket or process operation failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The server answered something the minimal HTTP reader does not accept.
    #[error("unexpected HTTP from the server: {0}; check that --target points at an SSE endpoint")]
    Http(String),
    /// An HTTP/2 connection or stream failed (the `--http2` load mode).
    #[error(
        "HTTP/2: {0}; check that the server accepts cleartext HTTP/2 with prior knowledge (h2c), or drop --http2"
    )]
    H2(#[from] h2::Error),
    /// The server process could not be started or did not say where it listens.
    #[error("server process: {0}")]
    Server(String),
    /// Bad command-line input.
    #[error("{0}")]
    Usage(String),
    /// Drawing a plot failed.
    #[error("cannot draw plot {path}: {message}")]
    Plot {
        /// The file being written.
        path: String,
        /// The backend's message.
        message: String,
    },
}
