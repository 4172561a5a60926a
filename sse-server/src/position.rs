use std::fmt;
use std::str::FromStr;

/// Where an event sits in its channel's log: a pair of numbers that only grows within a channel.
///
/// Hub-assigned event ids are a position written as `"<major>-<minor>"` (the same shape as a Redis Stream
/// entry id). The in-memory store uses the hub's start time in milliseconds as `major` (its *epoch*) and a
/// counter as `minor`, so ids stay unique and ordered across restarts, and ids from an earlier run are
/// recognised as unknown. Positions compare as the pair `(major, minor)`.
///
/// ```
/// use sse_server::Position;
/// let p: Position = "1700000000000-42".parse()?;
/// assert_eq!((p.major(), p.minor()), (1_700_000_000_000, 42));
/// assert_eq!(p.to_string(), "1700000000000-42");
/// assert!(Position::new(1, 9) < Position::new(2, 0));
/// # Ok::<(), sse_server::PositionParseError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    major: u64,
    minor: u64,
}

impl Position {
    /// A position from its two parts.
    ///
    /// ```
    /// assert_eq!(sse_server::Position::new(3, 4).to_string(), "3-4");
    /// ```
    pub const fn new(major: u64, minor: u64) -> Self {
        Position { major, minor }
    }

    /// The first part (the epoch for the memory store).
    ///
    /// ```
    /// assert_eq!(sse_server::Position::new(3, 4).major(), 3);
    /// ```
    pub const fn major(self) -> u64 {
        self.major
    }

    /// The second part (a counter for the memory store).
    ///
    /// ```
    /// assert_eq!(sse_server::Position::new(3, 4).minor(), 4);
    /// ```
    pub const fn minor(self) -> u64 {
        self.minor
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.major, self.minor)
    }
}

/// The text is not `"<digits>-<digits>"`.
///
/// ```
/// assert!("x".parse::<sse_server::Position>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a hub position: expected \"<number>-<number>\"")]
pub struct PositionParseError;

impl FromStr for Position {
    type Err = PositionParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s.split_once('-').ok_or(PositionParseError)?;
        let digits =
            |t: &str| !t.is_empty() && t.len() <= 20 && t.bytes().all(|c| c.is_ascii_digit());
        if !digits(a) || !digits(b) {
            return Err(PositionParseError);
        }
        Ok(Position {
            major: a.parse().map_err(|_| PositionParseError)?,
            minor: b.parse().map_err(|_| PositionParseError)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_signs_spaces_and_overflow() {
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "+1-2",
            "1-+2",
            " 1-2",
            "1-2-3",
            "99999999999999999999-1",
        ] {
            assert!(bad.parse::<Position>().is_err(), "{bad:?}");
        }
        assert_eq!("0-0".parse::<Position>(), Ok(Position::new(0, 0)));
    }
}
