//! What a channel name may be.

use crate::error::Error;

/// Checks a channel name: 1..=256 bytes, no control characters, and none of the invisible
/// characters that make look-alike names (bidi controls, line/paragraph separators, zero-width ones).
pub(crate) fn check_channel(name: &str) -> Result<(), Error> {
    let refuse = |reason: String| {
        Err(Error::InvalidChannel {
            name: name.chars().take(300).collect(),
            reason,
        })
    };
    if name.is_empty() {
        return refuse("the name is empty".to_owned());
    }
    if name.len() > 256 {
        return refuse(format!("the name is {} bytes long", name.len()));
    }
    for c in name.chars() {
        if c.is_control() {
            return refuse(format!(
                "it contains a control character (U+{:04X})",
                u32::from(c)
            ));
        }
        let what = match c {
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => "a bidi control character",
            '\u{2028}' => "a line separator",
            '\u{2029}' => "a paragraph separator",
            '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' => "a zero-width character",
            _ => continue,
        };
        return refuse(format!(
            "it contains {what} (U+{:04X}), invisible, so two different names would look alike",
            u32::from(c)
        ));
    }
    Ok(())
}
