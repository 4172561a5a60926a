/// Size limits that keep a parser's memory bounded whatever the peer sends.
///
/// A line longer than [`Limits::max_line_length`] or an event whose data grows beyond
/// [`Limits::max_event_size`] produces an error item; the parser discards that event and carries on
/// with the next one, never buffering more than the limits allow.
///
/// ```
/// use sse_proto::Limits;
/// let limits = Limits::default();
/// assert_eq!(limits.max_line_length, 1024 * 1024);
/// assert_eq!(limits.max_event_size, 16 * 1024 * 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest accepted line in bytes of decoded UTF-8, line terminator excluded (an invalid byte
    /// counts as the 3 bytes of the U+FFFD that replaces it). Default: 1 MiB.
    pub max_line_length: usize,
    /// Largest accepted data buffer of one event in bytes. Default: 16 MiB.
    pub max_event_size: usize,
}

impl Limits {
    /// Default maximum line length: 1 MiB.
    pub const DEFAULT_MAX_LINE_LENGTH: usize = 1024 * 1024;
    /// Default maximum event size: 16 MiB.
    pub const DEFAULT_MAX_EVENT_SIZE: usize = 16 * 1024 * 1024;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line_length: Self::DEFAULT_MAX_LINE_LENGTH,
            max_event_size: Self::DEFAULT_MAX_EVENT_SIZE,
        }
    }
}
