//! What a request's target carries: percent-encoded path segments and query parameters.

use std::borrow::Cow;

/// Decodes `%XX` escapes (and `+` as a space in forms); malformed escapes stay as they are.
pub(crate) fn percent_decode(input: &[u8], plus_as_space: bool) -> Vec<u8> {
    let input: Cow<'_, [u8]> = if plus_as_space && input.contains(&b'+') {
        Cow::Owned(
            input
                .iter()
                .map(|&b| if b == b'+' { b' ' } else { b })
                .collect(),
        )
    } else {
        Cow::Borrowed(input)
    };
    percent_encoding::percent_decode(&input).collect()
}

/// The first value of query parameter `name` (names and values form-decoded); `None` when it is
/// absent or not UTF-8.
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = String::from_utf8(percent_decode(k.as_bytes(), true)).ok()?;
        (k == name)
            .then(|| String::from_utf8(percent_decode(v.as_bytes(), true)).ok())
            .flatten()
    })
}

/// Every value of query parameter `name`, in order (form-decoded); `Err` with the raw value when one
/// is not UTF-8 once decoded.
pub(crate) fn query_params(query: Option<&str>, name: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for pair in query.unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if String::from_utf8(percent_decode(k.as_bytes(), true))
            .ok()
            .as_deref()
            != Some(name)
        {
            continue;
        }
        match String::from_utf8(percent_decode(v.as_bytes(), true)) {
            Ok(v) => out.push(v),
            Err(_) => return Err(v.to_owned()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode(b"a%20b+c%2", true), b"a b c%2");
        assert_eq!(percent_decode(b"%41%4a%", false), b"AJ%");
        assert_eq!(percent_decode(b"x%zz", false), b"x%zz");
        assert_eq!(percent_decode(b"a+b", false), b"a+b");
    }

    #[test]
    fn query_params_are_form_decoded() {
        assert_eq!(
            query_param(Some("a=1&last%45ventId=x+y%21"), "lastEventId").as_deref(),
            Some("x y!")
        );
        assert_eq!(query_param(Some("a=1"), "b"), None);
        assert_eq!(query_param(None, "a"), None);
    }

    #[test]
    fn repeated_parameters_in_order() {
        let q = Some("channel=a&x=1&channel=users%2F*&channel=b+c");
        assert_eq!(query_params(q, "channel").unwrap(), ["a", "users/*", "b c"]);
        assert!(query_params(None, "channel").unwrap().is_empty());
        assert_eq!(
            query_params(Some("channel=%FF"), "channel").unwrap_err(),
            "%FF"
        );
    }
}
