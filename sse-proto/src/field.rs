//! The field grammar of one line (WHATWG "interpreting an event stream"), as a nom parser.
//!
//! A line is already known to be non-empty and not a comment when it gets here.

use nom::bytes::complete::{tag, take_till};
use nom::combinator::{opt, rest};
use nom::sequence::preceded;
use nom::{IResult, Parser};

/// Splits a line into field name and value: the name is everything before the first colon; the value
/// is everything after it, minus one leading U+0020; a line without a colon is a name with an empty value.
pub(crate) fn split_field(line: &[u8]) -> (&[u8], &[u8]) {
    match field(line) {
        Ok((_, (name, value))) => (name, value.unwrap_or(&[])),
        // `take_till` and `rest` cannot fail on complete input; stay total anyway.
        Err(_) => (line, &[]),
    }
}

/// `(name, value)`; the value is `None` when the line has no colon.
type Field<'a> = (&'a [u8], Option<&'a [u8]>);

fn field(line: &[u8]) -> IResult<&[u8], Field<'_>> {
    (
        take_till(|b| b == b':'),
        opt(preceded((tag(&b":"[..]), opt(tag(&b" "[..]))), rest)),
    )
        .parse(line)
}

#[cfg(test)]
mod tests {
    use super::split_field;

    #[test]
    fn splits_name_and_value_removing_one_space() {
        assert_eq!(split_field(b"data: x"), (&b"data"[..], &b"x"[..]));
        assert_eq!(split_field(b"data:  x"), (&b"data"[..], &b" x"[..]));
        assert_eq!(split_field(b"data:x"), (&b"data"[..], &b"x"[..]));
        assert_eq!(split_field(b"data"), (&b"data"[..], &b""[..]));
        assert_eq!(split_field(b"data:"), (&b"data"[..], &b""[..]));
        assert_eq!(split_field(b"a:b:c"), (&b"a"[..], &b"b:c"[..]));
        assert_eq!(split_field(b"data:\t x"), (&b"data"[..], &b"\t x"[..]));
    }
}
