//! [`Text`]: the string type of a parsed [`Message`](crate::Message)'s fields.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

/// An immutable string that is cheap to clone: what a [`Message`](crate::Message)'s fields hold.
///
/// The parser hands out fields as slices of the decoded chunk they were read from, shared by
/// reference count, so a message costs no allocation of its own (three `String`s per event were
/// about a third of the parse time on small events). A `Text` keeps that chunk alive: convert to
/// `String` (`String::from(text)`) to keep a field for long without the rest of its chunk.
///
/// It dereferences to `&str`, and compares, hashes and prints like the string it holds.
///
/// ```
/// use sse_proto::Text;
/// let t = Text::from("hello");
/// assert_eq!(t, "hello");
/// assert_eq!(t.len(), 5);
/// assert_eq!(t.as_str().to_uppercase(), "HELLO");
/// assert_eq!(format!("{t} {t:?}"), "hello \"hello\"");
/// let owned: String = t.into();
/// assert_eq!(owned, "hello");
/// ```
#[derive(Clone)]
pub struct Text {
    /// `None`: the string is `word[..word[7]]`, at most [`INLINE`] bytes, valid UTF-8.
    buf: Option<Arc<String>>,
    /// With `buf`: the range `start..end` of it, as two little-endian `u32`s (character boundaries).
    word: [u8; 8],
}

/// Strings up to this many bytes are kept inline: copying them is cheaper than the atomic
/// reference count updates of sharing, and typical ids (counters) and event types are this short.
/// Keeping `Text` at 16 bytes matters as much: parsed items are moved several times on their way out.
const INLINE: usize = 7;

impl Text {
    /// `buf[start..end]` without copying (short ones inline), or a copy when the range does not fit
    /// the compact form. Callers pass character boundaries of `buf`.
    // Inlined, the caller keeps the result in registers: out of line, it came back through memory
    // in 8-byte stores that the caller's 16-byte loads could not forward from (a stall per field).
    #[inline(always)]
    pub(crate) fn shared(buf: &Arc<String>, start: usize, end: usize) -> Text {
        if end - start <= INLINE {
            return Text::inline(&buf[start..end]);
        }
        match (u32::try_from(start), u32::try_from(end)) {
            (Ok(start), Ok(end)) => {
                let word = u64::from(start) | u64::from(end) << 32;
                Text {
                    buf: Some(Arc::clone(buf)),
                    word: word.to_le_bytes(),
                }
            }
            _ => Text::copied(&buf[start..end]),
        }
    }

    /// `s` in an allocation of its own.
    #[cold]
    fn copied(s: &str) -> Text {
        let buf = Arc::new(s.to_owned());
        Text::shared(&buf, 0, s.len())
    }

    /// A copy of `s`, which is at most [`INLINE`] bytes long.
    #[inline(always)]
    pub(crate) fn inline(s: &str) -> Text {
        // Built in a register and stored at once: byte-wise stores followed by the 8-byte load of
        // the next move of the `Text` stall store forwarding (7% of the small-event case).
        let mut word = (s.len() as u64) << 56;
        for (i, b) in s.bytes().enumerate() {
            word |= u64::from(b) << (8 * i);
        }
        Text {
            buf: None,
            word: word.to_le_bytes(),
        }
    }

    /// Whether this is a slice of `buf`.
    pub(crate) fn is_in(&self, buf: &Arc<String>) -> bool {
        self.buf.as_ref().is_some_and(|b| Arc::ptr_eq(b, buf))
    }

    /// The string.
    ///
    /// ```
    /// assert_eq!(sse_proto::Text::from("x").as_str(), "x");
    /// ```
    pub fn as_str(&self) -> &str {
        let [a, b, c, d, e, f, g, h] = self.word;
        match &self.buf {
            Some(buf) => {
                let start = u32::from_le_bytes([a, b, c, d]) as usize;
                let end = u32::from_le_bytes([e, f, g, h]) as usize;
                &buf[start..end]
            }
            // Always valid: copied from a `&str` (`unwrap_or_default` keeps this panic-free).
            None => std::str::from_utf8(&self.word[..usize::from(h)]).unwrap_or_default(),
        }
    }
}

impl Default for Text {
    /// The empty string.
    ///
    /// ```
    /// assert_eq!(sse_proto::Text::default(), "");
    /// ```
    fn default() -> Self {
        Text::inline("")
    }
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for Text {
    fn as_ref(&self) -> &[u8] {
        self.as_str().as_bytes()
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        if s.len() <= INLINE {
            return Text::inline(s);
        }
        Text::copied(s)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text::from(s.as_str())
    }
}

impl From<&String> for Text {
    fn from(s: &String) -> Self {
        Text::from(s.as_str())
    }
}

impl From<Text> for String {
    fn from(t: Text) -> Self {
        t.as_str().to_owned()
    }
}

impl From<&Text> for String {
    fn from(t: &Text) -> Self {
        t.as_str().to_owned()
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl PartialOrd for Text {
    fn partial_cmp(&self, other: &Text) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Text {
    fn cmp(&self, other: &Text) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Text {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

macro_rules! eq_with {
    ($($t:ty),*) => {$(
        impl PartialEq<$t> for Text {
            fn eq(&self, other: &$t) -> bool {
                self.as_str() == AsRef::<str>::as_ref(other)
            }
        }
        impl PartialEq<Text> for $t {
            fn eq(&self, other: &Text) -> bool {
                AsRef::<str>::as_ref(self) == other.as_str()
            }
        }
    )*};
}
eq_with!(str, &str, String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_slice_reads_its_range_and_compares_by_content() {
        let long = "héllo, a value too long to be kept inline";
        let buf = Arc::new(format!("id: 7\ndata: {long}\n"));
        let t = Text::shared(&buf, 12, 12 + long.len());
        assert_eq!(t, long);
        assert!(t.is_in(&buf));
        assert!(!Text::from(long).is_in(&buf));
        assert_eq!(t, Text::from(long));
        assert_eq!(String::from(t.clone()), long);
        let mut h1 = std::collections::hash_map::DefaultHasher::new();
        let mut h2 = std::collections::hash_map::DefaultHasher::new();
        t.hash(&mut h1);
        long.hash(&mut h2);
        assert_eq!(h1.finish(), h2.finish());
    }

    #[test]
    fn short_values_are_copied_inline_up_to_the_limit() {
        let buf = Arc::new("é".repeat(20));
        for end in (0..=40).step_by(2) {
            let t = Text::shared(&buf, 0, end);
            assert_eq!(t, &buf[..end]);
            assert_eq!(t.is_in(&buf), end > INLINE, "{end}");
            assert_eq!(Text::from(&buf[..end]), &buf[..end]);
        }
    }
}
