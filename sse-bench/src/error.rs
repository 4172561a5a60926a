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
