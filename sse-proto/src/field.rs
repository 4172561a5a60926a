//! The field grammar of one line (WHATWG "interpreting an event stream").
//!
//! A line is already known to be non-empty and not a comment when it gets here.

/// Splits a line into field name and value: the name is everything before the first colon; the value
/// is everything after it, minus one leading U+0020; a line without a colon is a name with an empty value.
pub(crate) fn split_field(line: &str) -> (&str, &str) {
    // Field names are a few bytes long: a plain loop finds the colon sooner than a SIMD search
    // gets going.
    match line.bytes().position(|b| b == b':') {
        Some(colon) => {
            let value = &line[colon + 1..];
            (&line[..colon], value.strip_prefix(' ').unwrap_or(value))
        }
        // The empty value is a slice of the line too, so the parser can keep it as a range.
        None => (line, &line[line.len()..]),
    }
}

#[cfg(test)]
mod tests {
    use super::split_field;

    #[test]
    fn splits_name_and_value_removing_one_space() {
        assert_eq!(split_field("data: x"), ("data", "x"));
        assert_eq!(split_field("data:  x"), ("data", " x"));
        assert_eq!(split_field("data:x"), ("data", "x"));
        assert_eq!(split_field("data"), ("data", ""));
        assert_eq!(split_field("data:"), ("data", ""));
        assert_eq!(split_field("a:b:c"), ("a", "b:c"));
        assert_eq!(split_field("data:\t x"), ("data", "\t x"));
    }
}
